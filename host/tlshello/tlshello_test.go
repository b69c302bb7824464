package tlshello

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"
)

func TestParseBrowserLikeHello(t *testing.T) {
	b := Build(Spec{SNI: "WWW.Example.com", ALPN: []string{"h2", "http/1.1"}, TLS13: true, GREASE: true})
	var h Hello
	if err := Parse(b, &h); err != nil {
		t.Fatal(err)
	}
	if string(h.SNI) != "WWW.Example.com" || h.Truncated {
		t.Fatalf("sni %q truncated %v", h.SNI, h.Truncated)
	}
	if h.Version != 0x0304 || h.LegacyVersion != 0x0303 || VersionName(h.Version) != "TLS 1.3" {
		t.Fatalf("version %#x legacy %#x", h.Version, h.LegacyVersion)
	}
	if p := h.Protocols(); len(p) != 2 || string(p[0]) != "h2" || string(p[1]) != "http/1.1" {
		t.Fatalf("alpn %q", p)
	}
	name, err := SNI(b)
	if err != nil || string(name) != "WWW.Example.com" {
		t.Fatalf("SNI() = %q, %v", name, err)
	}
}

func TestOldHello(t *testing.T) {
	b := Build(Spec{SNI: "legacy.example"})
	var h Hello
	if err := Parse(b, &h); err != nil || h.Version != 0x0303 || h.NALPN != 0 {
		t.Fatalf("err %v version %#x alpn %d", err, h.Version, h.NALPN)
	}
	// No SNI at all.
	if _, err := SNI(Build(Spec{ALPN: []string{"h2"}})); err != ErrNoSNI {
		t.Fatalf("hello without SNI: %v", err)
	}
	// No extensions at all: cut the extensions block off and fix lengths.
	noExt := Build(Spec{})
	bodyLen := 2 + 32 + 1 + 2 + 6 + 2
	noExt = noExt[:5+4+bodyLen]
	binary.BigEndian.PutUint16(noExt[3:5], uint16(4+bodyLen))
	noExt[6], noExt[7], noExt[8] = 0, 0, byte(bodyLen)
	if err := Parse(noExt, &h); err != nil || h.SNI != nil {
		t.Fatalf("hello without extensions: %v sni %q", err, h.SNI)
	}
	if _, err := SNI(noExt); err != ErrNoSNI {
		t.Fatalf("SNI of a hello without extensions: %v", err)
	}
}

func TestNotAHello(t *testing.T) {
	hello := Build(Spec{SNI: "a.example"})
	serverHello := bytes.Clone(hello)
	serverHello[5] = 2
	cases := []struct {
		name string
		b    []byte
		err  error
	}{
		{"empty", nil, ErrTruncated},
		{"http", []byte("GET / HTTP/1.1\r\nHost: a.example\r\n\r\n"), ErrNotHandshake},
		{"application data", []byte{23, 3, 3, 0, 5, 1, 2, 3, 4, 5}, ErrNotHandshake},
		{"not tls", []byte{22, 1, 0, 0, 5, 1, 2, 3, 4, 5}, ErrNotTLS},
		{"server hello", serverHello, ErrNotHello},
		{"record too long", []byte{22, 3, 1, 0xff, 0xff, 1}, ErrMalformed},
		{"a fragment of a hello", []byte{22, 3, 1, 0, 2, 1, 0}, ErrTruncated},
		{"zero-length record", []byte{22, 3, 1, 0, 0, 22, 3, 1, 0, 2, 1, 0}, ErrMalformed},
		{"second record not tls", []byte{22, 3, 1, 0, 2, 1, 0, 22, 1, 1, 0, 2, 0, 9}, ErrNotTLS},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := SNI(tc.b); err != tc.err {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
		})
	}
}

// offsetOf finds where the SNI extension's host name ends in b.
func sniEnd(t *testing.T, b []byte, name string) int {
	t.Helper()
	i := bytes.Index(b, []byte(name))
	if i < 0 {
		t.Fatal("name not in hello")
	}
	return i + len(name)
}

// TestEveryTruncation cuts a hello at every length: before the end of the
// host name SNI reports ErrTruncated, after it the name, never anything
// else.
func TestEveryTruncation(t *testing.T) {
	const name = "cut.example.org"
	b := Build(Spec{SNI: name, ALPN: []string{"h2"}, TLS13: true, GREASE: true, Padding: 100})
	end := sniEnd(t, b, name)
	for n := 0; n < len(b); n++ {
		got, err := SNI(b[:n])
		if n < end {
			if err != ErrTruncated || got != nil {
				t.Fatalf("cut at %d (name ends at %d): %q, %v", n, end, got, err)
			}
			continue
		}
		if err != nil || string(got) != name {
			t.Fatalf("cut at %d after the name: %q, %v", n, got, err)
		}
		var h Hello
		if err := Parse(b[:n], &h); err != ErrTruncated || !h.Truncated {
			t.Fatalf("Parse cut at %d: %v truncated=%v", n, err, h.Truncated)
		}
	}
}

// TestSpansRecords: a hello whose handshake length runs past its record
// reads as truncated at the record's end.
func TestSpansRecords(t *testing.T) {
	b := Build(Spec{SNI: "split.example", Padding: 200})
	// Shorten the record to end right after the SNI; keep the handshake
	// length.
	end := sniEnd(t, b, "split.example")
	rec := bytes.Clone(b[:end])
	binary.BigEndian.PutUint16(rec[3:5], uint16(end-5))
	rec = append(rec, 23, 3, 3, 0, 1, 0) // another record follows
	name, err := SNI(rec)
	if err != nil || string(name) != "split.example" {
		t.Fatalf("SNI = %q, %v", name, err)
	}
	var h Hello
	if err := Parse(rec, &h); err != ErrTruncated {
		t.Fatalf("Parse: %v", err)
	}
}

func TestMalformed(t *testing.T) {
	base := Build(Spec{SNI: "m.example", ALPN: []string{"h2"}})
	// Offsets in the hello Build makes without GREASE: record 5, handshake
	// 4, version 2, random 32, session id length at 43.
	const sidOff = 5 + 4 + 2 + 32
	mutate := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(base)) }
	extStart := sidOff + 1 + 2 + 6 + 2 + 2 // after the extensions length
	cases := []struct {
		name string
		b    []byte
		err  error
	}{
		{"session id too long", mutate(func(b []byte) []byte { b[sidOff] = 33; return b }), ErrMalformed},
		{"odd cipher suites", mutate(func(b []byte) []byte { b[sidOff+2] = 5; return b }), ErrMalformed},
		{"no cipher suites", mutate(func(b []byte) []byte { b[sidOff+2] = 0; return b }), ErrMalformed},
		{"extensions longer than the hello", mutate(func(b []byte) []byte { b[extStart-2] = 0xff; return b }), ErrMalformed},
		{"extension longer than the block", mutate(func(b []byte) []byte { b[extStart+2] = 0xff; return b }), ErrMalformed},
		{"name with a NUL", mutate(func(b []byte) []byte {
			b[bytes.Index(b, []byte("m.example"))+1] = 0
			return b
		}), ErrBadServerName},
		{"duplicate server_name", dupSNI(t), ErrMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := SNI(tc.b); err != tc.err {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
		})
	}
}

// dupSNI builds a hello with two server_name extensions.
func dupSNI(t *testing.T) []byte {
	t.Helper()
	b := Build(Spec{SNI: "one.example"})
	// The SNI extension is the first: type at extStart.
	const extStart = 5 + 4 + 2 + 32 + 1 + 2 + 6 + 2 + 2
	extLen := 4 + int(binary.BigEndian.Uint16(b[extStart+2:]))
	ext := bytes.Clone(b[extStart : extStart+extLen])
	out := append(bytes.Clone(b[:extStart]), ext...)
	out = append(out, b[extStart:]...)
	// Fix the extensions, handshake and record lengths.
	binary.BigEndian.PutUint16(out[extStart-2:], binary.BigEndian.Uint16(out[extStart-2:])+uint16(extLen))
	hs := int(out[6])<<16 | int(out[7])<<8 | int(out[8]) + extLen
	out[6], out[7], out[8] = byte(hs>>16), byte(hs>>8), byte(hs)
	binary.BigEndian.PutUint16(out[3:5], uint16(hs+4))
	if _, err := SNI(b); err != nil {
		t.Fatalf("base hello: %v", err)
	}
	return out
}

func TestManyALPN(t *testing.T) {
	var protos []string
	for i := range 12 {
		protos = append(protos, "p"+strings.Repeat("x", i))
	}
	var h Hello
	if err := Parse(Build(Spec{SNI: "x.example", ALPN: protos}), &h); err != nil {
		t.Fatal(err)
	}
	if h.NALPN != MaxALPN || string(h.ALPN[MaxALPN-1]) != protos[MaxALPN-1] {
		t.Fatalf("kept %d protocols", h.NALPN)
	}
}

func TestGREASE(t *testing.T) {
	for _, v := range []uint16{0x0a0a, 0x1a1a, 0xfafa} {
		if !IsGREASE(v) {
			t.Errorf("%#x is GREASE", v)
		}
	}
	for _, v := range []uint16{0x0303, 0x0a1a, 0x0b0b, 0} {
		if IsGREASE(v) {
			t.Errorf("%#x is not GREASE", v)
		}
	}
}

func TestParseDoesNotAllocate(t *testing.T) {
	b := Build(Spec{SNI: "www.example.com", ALPN: []string{"h2"}, TLS13: true, GREASE: true})
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := SNI(b); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("SNI allocates %v times", allocs)
	}
}

func BenchmarkSNI(b *testing.B) {
	hello := Build(Spec{SNI: "www.example.com", ALPN: []string{"h2", "http/1.1"}, TLS13: true, GREASE: true, Padding: 300})
	b.ReportAllocs()
	b.SetBytes(int64(len(hello)))
	for b.Loop() {
		if _, err := SNI(hello); err != nil {
			b.Fatal(err)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add(Build(Spec{SNI: "a.example", ALPN: []string{"h2"}, TLS13: true, GREASE: true}))
	f.Add(Build(Spec{SNI: "b.example"}))
	f.Add(Build(Spec{}))
	f.Add([]byte{22, 3, 1, 0, 4, 1, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		var h Hello
		err := Parse(b, &h)
		if (err == ErrTruncated) != h.Truncated {
			t.Fatalf("err %v but Truncated=%v", err, h.Truncated)
		}
		if h.SNI != nil && !validName(h.SNI) {
			t.Fatalf("invalid name %q returned", h.SNI)
		}
		if h.NALPN > MaxALPN {
			t.Fatalf("NALPN %d", h.NALPN)
		}
		name, serr := SNI(b)
		if (serr == nil) != (name != nil) {
			t.Fatalf("SNI() = %q, %v", name, serr)
		}
		// The name read from a prefix is the name read from the whole.
		if serr == nil && len(b) > 1 {
			if pre, perr := SNI(b[:len(b)-1]); perr == nil && !bytes.Equal(pre, name) {
				t.Fatalf("prefix gives %q, whole %q", pre, name)
			}
		}
	})
}

func TestPadFirst(t *testing.T) {
	b := Build(Spec{SNI: "late.example", Padding: 1000, PadFirst: true})
	if end := sniEnd(t, b, "late.example"); end < 1000 {
		t.Fatalf("name ends at %d, want after the padding", end)
	}
	if _, err := SNI(b[:600]); err != ErrTruncated {
		t.Fatalf("first 600 bytes: %v", err)
	}
	if name, err := SNI(b); err != nil || string(name) != "late.example" {
		t.Fatalf("whole: %q %v", name, err)
	}
}

// TestAcrossRecords: a hello fragmented over records at every byte, and
// into one-byte records, reads whole; cut anywhere it reads as truncated.
func TestAcrossRecords(t *testing.T) {
	const name = "records.example"
	b := Build(Spec{SNI: name, ALPN: []string{"h2"}, TLS13: true, Padding: 50})
	for cut := 1; cut < len(b)-5; cut++ {
		var h Hello
		if err := Parse(Fragment(b, cut, MaxMessage), &h); err != nil || string(h.SNI) != name || h.NALPN != 1 {
			t.Fatalf("cut at %d: %q, %v", cut, h.SNI, err)
		}
	}
	rec := Fragment(b, 1)
	var h Hello
	buf, err := ParseRecords(rec, &h, nil)
	if err != nil || string(h.SNI) != name {
		t.Fatalf("one-byte records: %q, %v", h.SNI, err)
	}
	if _, err := ParseRecords(rec, &h, buf); err != nil || string(h.SNI) != name {
		t.Fatalf("buffer reused: %q, %v", h.SNI, err)
	}
	end := 6*(sniEnd(t, b, name)-6) + 6 // one-byte records: message byte j at 6j+5
	for n := 0; n < len(rec); n++ {
		err := Parse(rec[:n], &h)
		if err != ErrTruncated || (n >= end) != (string(h.SNI) == name) {
			t.Fatalf("one-byte records cut at %d (name ends at %d): %q, %v", n, end, h.SNI, err)
		}
	}
}

func TestAcrossRecordsTooLong(t *testing.T) {
	b := Build(Spec{SNI: "x.example"})
	b[6], b[7], b[8] = 1, 0, 1 // handshake length 65537
	if err := Parse(Fragment(b, 10, MaxMessage), &Hello{}); err != ErrMalformed {
		t.Fatal(err)
	}
}
