package packet

import (
	"bytes"
	"testing"
)

// FuzzRewrite checks that the rewrites and replies never panic on hostile
// packets, and that whatever they produce from a rewritable packet decodes
// with valid checksums.
func FuzzRewrite(f *testing.F) {
	for _, s := range specs() {
		s.Payload = []byte("payload")
		b, _ := Build(s)
		f.Add(b, []byte("new payload"), uint16(536))
	}
	f.Add([]byte{0x45, 0, 0, 20}, []byte{}, uint16(0))
	f.Fuzz(func(t *testing.T, b, payload []byte, mss uint16) {
		var p Parsed
		p.Decode(b)
		for _, typ := range []uint8{3, 1} {
			if r, err := ICMPErrorReply(&p, b, typ, 0); err == nil {
				checkBuilt(t, r)
			}
		}
		if r, err := UDPReply(&p, payload); err == nil {
			checkBuilt(t, r)
		}
		if rs, err := ResetReplies(&p, b); err == nil {
			for _, r := range rs {
				checkBuilt(t, r)
			}
		}
		if Rewritable(&p) != nil {
			return
		}
		b = bytes.Clone(b)
		SetTTL(&p, b, 1)
		SetTrafficClass(&p, b, 0xff)
		_, _ = ClampMSS(&p, b, mss)
		nb, err := SetPayload(&p, b, payload)
		if err != nil {
			nb = b
		}
		var q Parsed
		q.Decode(nb)
		FixChecksums(&q, nb)
		if q.Err == "" && !q.Truncated && !q.Fragment && !VerifyChecksums(&q, nb) {
			t.Fatalf("checksums wrong after rewrite: %s", q.String())
		}
	})
}

func checkBuilt(t *testing.T, b []byte) {
	t.Helper()
	var p Parsed
	p.Decode(b)
	if p.Err != "" || p.Truncated || !VerifyChecksums(&p, b) {
		t.Fatalf("built reply %s is not a valid packet", p.String())
	}
}
