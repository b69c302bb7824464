package stream

import (
	"encoding/binary"
	"testing"
)

// FuzzTable feeds a table segments made from the input (sequence numbers,
// flags, urgent pointers and payloads an attacker chooses) and checks that
// it never panics, keeps its limits, and that every reading is as long as
// the contiguous bytes (less the urgent byte).
func FuzzTable(f *testing.F) {
	f.Add([]byte("\x00\x00\x03\xe8\x02\x00\x00\x00\x00\x00\x03\xe9\x18\x00\x00\x05hello"))
	f.Add([]byte("\x00\x00\x00\x10\x38\x00\x02\x04abcd\x00\x00\x00\x0c\x18\x00\x00\x04wxyz\x00\x00\x00\x0c\x18\x00\x00\x04WXYZ"))
	f.Fuzz(fuzzBody)
}

func fuzzBody(t *testing.T, b []byte) {
	tb := NewTable(Limits{Bytes: 256, Flows: 4, Memory: 4096, Variants: 3}, nil)
	now := int64(0)
	for len(b) >= 8 {
		seq := binary.BigEndian.Uint32(b)
		flags, urg, n := b[4], binary.BigEndian.Uint16(b[5:7]), int(b[7])
		b = b[8:]
		n = min(n, len(b))
		k := key
		k.SPort = uint16(flags & 3)
		now += int64(flags) << 20
		fl := tb.Add(k, Segment{Seq: seq, Flags: flags&^3 | flags&FlagSYN, Urgent: urg, Payload: b[:n], BadChecksum: flags&0x80 != 0}, now)
		b = b[n:]
		if st := tb.Stats(); st.Bytes > 4096+3*512 || st.Flows > 4 {
			t.Fatalf("limits: %+v", st)
		}
		if fl == nil || fl.Done {
			continue
		}
		c := fl.Contiguous()
		for i := 0; i < fl.Variants(); i++ {
			r := tb.Reading(fl, i)
			if len(r) != c && len(r) != c-1 {
				t.Fatalf("reading %d: %d bytes, contiguous %d", i, len(r), c)
			}
		}
		if c > 0 && len(b)%3 == 0 {
			tb.Finish(fl, nil)
		} else if c > 0 && len(b)%5 == 0 {
			tb.Consume(fl, c/2)
		}
	}
}
