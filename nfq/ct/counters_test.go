package ct

import (
	"encoding/binary"
	"testing"
)

func TestCTPacketsOf(t *testing.T) {
	counters := func(typ uint16, packets uint64) []byte {
		var inner []byte
		inner = attr(inner, 1, binary.BigEndian.AppendUint64(nil, packets)) // CTA_COUNTERS_PACKETS
		inner = attr(inner, 2, binary.BigEndian.AppendUint64(nil, 999))     // CTA_COUNTERS_BYTES
		return attr(nil, typ|nlaNested, inner)
	}
	mark := attr(nil, 8, []byte{0, 0, 0, 5})
	for _, tc := range []struct {
		name string
		nest []byte
		want uint64
		ok   bool
	}{
		{"both directions", append(append(append([]byte{}, mark...), counters(9, 3)...), counters(10, 2)...), 5, true},
		{"original only", counters(9, 7), 7, true},
		{"none", mark, 0, false},
		{"empty", nil, 0, false},
		{"truncated", counters(9, 7)[:10], 0, false},
	} {
		got, ok := PacketsOf(tc.nest)
		if got != tc.want || ok != tc.ok {
			t.Errorf("%s: %d %v, want %d %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
}
