package quic

import (
	"bytes"
	"crypto/aes"
	"encoding/hex"
	"testing"
)

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestClientKeys checks the derivation against RFC 9001 appendix A.1 (v1)
// and RFC 9369 appendix A.1 (v2), and the header protection mask of the
// sample in RFC 9001 appendix A.2.
func TestClientKeys(t *testing.T) {
	dcid := unhex(t, "8394c8f03e515708")
	for _, c := range []struct {
		v           uint32
		key, iv, hp string
	}{
		{V1, "1f369613dd76d5467730efcbe3b1a22d", "fa044b2f42a3fd3b46fb255c", "9f50449e04a0e810283a1e9933adedd2"},
		{V2, "8b1a0bc121284290a29e0971b5cd045d", "91f73e2351d8fa91660e909f", "45b95e15235d6f45a6b19cbcb0294ba9"},
	} {
		k, err := ClientKeys(c.v, dcid)
		if err != nil {
			t.Fatal(err)
		}
		if hex.EncodeToString(k.Key) != c.key || hex.EncodeToString(k.IV) != c.iv || hex.EncodeToString(k.HP) != c.hp {
			t.Errorf("version %#x: key %x iv %x hp %x", c.v, k.Key, k.IV, k.HP)
		}
	}
	k, _ := ClientKeys(V1, dcid)
	b, _ := aes.NewCipher(k.HP)
	var mask [16]byte
	b.Encrypt(mask[:], unhex(t, "d1b1c98dd7689fb8ec11d242b123dc9b"))
	if got := hex.EncodeToString(mask[:5]); got != "437b9aec36" {
		t.Errorf("v1 header protection mask %s, want 437b9aec36", got)
	}
	if _, err := ClientKeys(0xff00001d, dcid); err != ErrVersion {
		t.Errorf("draft version: %v", err)
	}
}

func TestSealOpen(t *testing.T) {
	dcid, scid := unhex(t, "8394c8f03e515708"), []byte{1, 2, 3}
	for _, v := range []uint32{V1, V2} {
		frames := append(CryptoFrame(100, []byte("world")), CryptoFrame(0, []byte("hello"))...)
		frames = append([]byte{0x01, 0x02, 0x05, 0x00, 0x00, 0x01}, frames...) // PING, ACK
		pkt, err := Seal(v, dcid, scid, 7, frames, 1200)
		if err != nil {
			t.Fatal(err)
		}
		if len(pkt) < 1200 {
			t.Fatalf("%d bytes", len(pkt))
		}
		two := append(append([]byte(nil), pkt...), pkt...)
		plain, h, rest, err := Open(two, nil)
		if err != nil || h.Version != v || !bytes.Equal(h.DCID, dcid) || h.PN != 7 || len(rest) != len(pkt) {
			t.Fatalf("version %#x: %v %+v rest %d", v, err, h, len(rest))
		}
		got := map[uint64]string{}
		if err := Frames(plain, func(off uint64, d []byte) { got[off] = string(d) }); err != nil {
			t.Fatal(err)
		}
		if got[0] != "hello" || got[100] != "world" || len(got) != 2 {
			t.Fatalf("frames %v", got)
		}
		bad := append([]byte(nil), pkt...)
		bad[len(bad)-1] ^= 1
		if _, _, _, err := Open(bad, nil); err != ErrDecrypt {
			t.Fatalf("a flipped tag bit: %v", err)
		}
	}
}

func TestOpenHostile(t *testing.T) {
	pkt, _ := Seal(V1, []byte{9, 9, 9, 9, 9, 9, 9, 9}, nil, 1, CryptoFrame(0, []byte("x")), 1200)
	for n := 0; n < len(pkt); n += 7 {
		if _, _, _, err := Open(pkt[:n], nil); err == nil {
			t.Fatalf("cut at %d: opened", n)
		}
	}
	short := []byte{0xc0, 0, 0, 0, 1, 21, 0, 0, 0}
	if _, _, _, err := Open(short, nil); err != ErrMalformed {
		t.Fatalf("cid too long: %v", err)
	}
	handshake := append([]byte(nil), pkt...)
	handshake[0] = 0xe0 // a Handshake packet
	if _, _, _, err := Open(handshake, nil); err != ErrNotInitial {
		t.Fatal(err)
	}
	if err := Frames([]byte{0x06, 0x00, 0x40}, func(uint64, []byte) {}); err != ErrMalformed {
		t.Fatal(err)
	}
}

func FuzzOpen(f *testing.F) {
	pkt, _ := Seal(V2, []byte{1, 2, 3, 4}, nil, 1, CryptoFrame(0, []byte("x")), 1200)
	f.Add(pkt)
	f.Fuzz(func(t *testing.T, b []byte) {
		p, _, _, err := Open(b, nil)
		if err == nil {
			_ = Frames(p, func(uint64, []byte) {})
		}
	})
}
