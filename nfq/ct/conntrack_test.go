package ct

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/ti-mo/conntrack"

	"github.com/luafw/luafw/netfilter"

	"golang.org/x/sys/unix"
)

// applyUpdate applies u to an entry's mark and labels the way the kernel does.
func applyUpdate(mark uint32, labels [2]uint64, u Update) (uint32, [2]uint64) {
	if u.SetMark {
		m := fullMask32(u.MarkMask)
		mark = mark&^m | u.Mark&m
	}
	if u.SetLabels {
		m := labelMask(u)
		for i := range 2 {
			labels[i] = labels[i]&^m[i] | u.Labels[i]&m[i]
		}
	}
	return mark, labels
}

func TestCTMerge(t *testing.T) {
	ups := []Update{
		{Mark: 0x12, MarkMask: 0xff, SetMark: true},
		{Timeout: 30, SetTimeout: true},
		{Mark: 0xa00, MarkMask: 0xf0f, SetMark: true, Labels: [2]uint64{1, 0}, SetLabels: true},
		{Labels: [2]uint64{0, 4}, LabelsMask: [2]uint64{1, 4}, SetLabels: true},
		{Mark: 0, SetMark: true},
		{Mark: 0x5, MarkMask: 0x5, SetMark: true, Timeout: 60, SetTimeout: true},
	}
	start := uint32(0xdeadbeef)
	startL := [2]uint64{0xf0, 0xf0}
	for n := 1; n <= len(ups); n++ {
		m, l := start, startL
		merged := ups[0]
		m, l = applyUpdate(m, l, ups[0])
		for _, u := range ups[1:n] {
			m, l = applyUpdate(m, l, u)
			merged = merge(merged, u)
		}
		gm, gl := applyUpdate(start, startL, merged)
		if gm != m || gl != l {
			t.Errorf("first %d updates: merged %+v gives mark %#x labels %x, one by one %#x %x", n, merged, gm, gl, m, l)
		}
	}
	if got := merge(ups[1], ups[5]); got.Timeout != 60 || !got.SetTimeout {
		t.Errorf("timeout not taken from the later update: %+v", got)
	}
}

func TestCTMessageEncoding(t *testing.T) {
	tu := Tuple{Proto: 6, Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.0.0.2"), SPort: 40000, DPort: 443}
	u := Update{Mark: 0x1234, MarkMask: 0xff00, SetMark: true, Timeout: 99, SetTimeout: true, Labels: [2]uint64{1 << 5}, SetLabels: true}
	b, err := appendMsg(nil, msgNew, 7, unix.NLM_F_REQUEST|unix.NLM_F_ACK, tu, &u)
	if err != nil {
		t.Fatal(err)
	}
	if int(binary.NativeEndian.Uint32(b)) != len(b) || binary.NativeEndian.Uint16(b[4:]) != msgNew || binary.NativeEndian.Uint32(b[8:]) != 7 || b[16] != unix.AF_INET {
		t.Fatalf("bad header % x", b[:20])
	}
	got := map[uint16][]byte{}
	if err := attrs(b[20:], func(typ uint16, d []byte) { got[typ] = d }); err != nil {
		t.Fatal(err)
	}
	be := func(v uint32) string { return string(binary.BigEndian.AppendUint32(nil, v)) }
	if string(got[ctaMark]) != be(0x1200) || string(got[ctaMarkMask]) != be(0xff00) || string(got[ctaTimeout]) != be(99) {
		t.Errorf("mark % x mask % x timeout % x", got[ctaMark], got[ctaMarkMask], got[ctaTimeout])
	}
	var wantLabels [16]byte
	binary.NativeEndian.PutUint64(wantLabels[:], 1<<5)
	if string(got[ctaLabels]) != string(wantLabels[:]) || string(got[ctaLabelsMask]) != string(wantLabels[:]) {
		t.Errorf("labels % x mask % x", got[ctaLabels], got[ctaLabelsMask])
	}
	// A reply carrying the same tuple parses back, and the direction is
	// told from the asked tuple.
	e, err := parseEntry(b, tu)
	if err != nil {
		t.Fatal(err)
	}
	if e.Mark != 0x1200 || e.Timeout != 99 || e.Labels != [2]uint64{1 << 5} || e.Reply {
		t.Errorf("parsed %+v", e)
	}
	rev := Tuple{Proto: 6, Src: tu.Dst, Dst: tu.Src, SPort: tu.DPort, DPort: tu.SPort}
	if e, err := parseEntry(b, rev); err != nil || !e.Reply || e.State() != netfilter.CTEstablished {
		t.Errorf("reverse tuple: %+v %v", e, err)
	}

	for _, bad := range []Tuple{
		{Proto: 6},
		{Proto: 6, Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("fd00::1")},
	} {
		if _, err := appendMsg(nil, msgGet, 1, unix.NLM_F_REQUEST, bad, nil); err == nil {
			t.Errorf("tuple %+v accepted", bad)
		}
	}
}

func TestCTEntryState(t *testing.T) {
	for _, c := range []struct {
		e    Entry
		want netfilter.CTState
	}{
		{Entry{}, netfilter.CTNew},
		{Entry{Status: uint32(conntrack.StatusSeenReply)}, netfilter.CTEstablished},
		{Entry{Reply: true}, netfilter.CTEstablished},
		{Entry{Status: uint32(conntrack.StatusExpected)}, netfilter.CTRelated},
		{Entry{Status: uint32(conntrack.StatusExpected | conntrack.StatusSeenReply)}, netfilter.CTEstablished},
	} {
		if got := c.e.State(); got != c.want {
			t.Errorf("%+v: state %d, want %d", c.e, got, c.want)
		}
	}
}

func TestCTUpdaterSubmitNeverBlocks(t *testing.T) {
	u := NewUpdater(nil, 2, nil) // never Run: the queue fills up
	tu := Tuple{Proto: 17, Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.0.0.2")}
	for i := range 5 {
		ok := u.Submit(tu, Update{Mark: uint32(i), SetMark: true})
		if ok != (i < 2) {
			t.Errorf("Submit %d = %v", i, ok)
		}
	}
	if st := u.Stats(); st.Submitted != 2 || st.Dropped != 3 {
		t.Errorf("stats %+v, want 2 submitted, 3 dropped", st)
	}
}
