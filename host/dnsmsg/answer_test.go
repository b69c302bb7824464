package dnsmsg

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
)

func TestAppendAnswer(t *testing.T) {
	q, _ := AppendQuery(nil, 0xbeef, "Ads.Example", 1)
	q6, _ := AppendQuery(nil, 7, "ads.example", 28)
	s := Sinkhole{A: netip.MustParseAddr("0.0.0.0"), AAAA: netip.MustParseAddr("::"), TTL: 60}
	for _, tc := range []struct {
		name  string
		q     []byte
		s     Sinkhole
		rcode uint8
		rdata []byte
	}{
		{"A", q, s, 0, []byte{0, 0, 0, 0}},
		{"AAAA", q6, s, 0, make([]byte, 16)},
		{"NXDOMAIN", q, Sinkhole{NXDomain: true}, 3, nil},
		{"A without an address: NODATA", q, Sinkhole{AAAA: s.AAAA}, 0, nil},
	} {
		r, err := AppendAnswer(nil, tc.q, tc.s)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		var m Msg
		if err := m.Parse(r); err != nil {
			t.Fatalf("%s: response does not parse: %v", tc.name, err)
		}
		var qm Msg
		_ = qm.Parse(tc.q)
		if m.ID != qm.ID || !m.QR || !m.RD || !m.RA || m.RCode != tc.rcode || m.QDCount != 1 ||
			!bytes.Equal(m.QName(), qm.QName()) || m.QType != qm.QType {
			t.Errorf("%s: header %+v", tc.name, m.Header)
		}
		if !bytes.Equal(r[12:len(tc.q)], tc.q[12:]) {
			t.Errorf("%s: question not copied byte for byte", tc.name)
		}
		if tc.rdata == nil {
			if m.ANCount != 0 || len(r) != len(tc.q) {
				t.Errorf("%s: %d answers, %d bytes", tc.name, m.ANCount, len(r))
			}
			continue
		}
		ans := r[len(tc.q):]
		if m.ANCount != 1 || ans[0] != 0xc0 || ans[1] != 12 || binary.BigEndian.Uint32(ans[6:10]) != 60 ||
			!bytes.Equal(ans[12:], tc.rdata) {
			t.Errorf("%s: answer %x", tc.name, ans)
		}
	}
	resp, _ := AppendAnswer(nil, q, s)
	for _, bad := range [][]byte{nil, q[:14], resp} {
		if _, err := AppendAnswer(nil, bad, s); err == nil {
			t.Errorf("answered %x", bad)
		}
	}
}
