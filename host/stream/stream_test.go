package stream

import (
	"net/netip"
	"testing"
	"time"
)

var key = Key{Src: netip.MustParseAddr("192.0.2.1"), Dst: netip.MustParseAddr("198.51.100.1"), SPort: 40000, DPort: 443}

const isn = 1000

func syn(t *Table, k Key) *Flow { return t.Add(k, Segment{Seq: isn, Flags: FlagSYN}, 0) }

func seg(t *Table, k Key, off int, s string) *Flow {
	return t.Add(k, Segment{Seq: uint32(isn + 1 + off), Payload: []byte(s)}, 0)
}

func readings(t *Table, f *Flow) []string {
	var out []string
	for i := 0; i < f.Variants(); i++ {
		out = append(out, string(t.Reading(f, i)))
	}
	return out
}

func wantReadings(t *testing.T, tb *Table, f *Flow, want ...string) {
	t.Helper()
	got := readings(tb, f)
	if len(got) != len(want) {
		t.Fatalf("readings %q, want %q", got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("reading %d: %q, want %q (all %q)", i, got[i], want[i], got)
		}
	}
}

func TestOrderAndOverlap(t *testing.T) {
	for _, c := range []struct {
		name string
		segs []struct {
			off int
			s   string
		}
		want []string
	}{
		{"in order", segsOf(0, "hello ", 6, "world"), []string{"hello world"}},
		{"disorder", segsOf(6, "world", 0, "hello "), []string{"hello world"}},
		{"gap held", segsOf(0, "he", 6, "world"), []string{"he"}},
		{"retransmission", segsOf(0, "hello ", 0, "hello ", 6, "world", 3, "lo wo"), []string{"hello world"}},
		{"fake first, real later", segsOf(0, "fake.example", 0, "real.example"), []string{"fake.example", "real.example"}},
		{"real, fake, real", segsOf(0, "aaaa", 0, "bbbb", 0, "aaaa"), []string{"aaaa", "bbbb"}},
		{"overlap into held", segsOf(4, "WXYZ", 0, "abcdef"), []string{"abcdWXYZ", "abcdefYZ"}},
		{"seqovl before start trimmed", segsOf(-3, "junabc", 2, "cd"), []string{"abcd"}},
		{"far future ignored", segsOf(0, "ab", 1<<20, "zz"), []string{"ab"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			tb := NewTable(Limits{}, nil)
			syn(tb, key)
			var f *Flow
			for _, s := range c.segs {
				f = seg(tb, key, s.off, s.s)
			}
			wantReadings(t, tb, f, c.want...)
		})
	}
}

func segsOf(a ...any) []struct {
	off int
	s   string
} {
	var out []struct {
		off int
		s   string
	}
	for i := 0; i < len(a); i += 2 {
		out = append(out, struct {
			off int
			s   string
		}{a[i].(int), a[i+1].(string)})
	}
	return out
}

func TestUrgentByteRemoved(t *testing.T) {
	tb := NewTable(Limits{}, nil)
	syn(tb, key)
	seg(tb, key, 0, "abc")
	f := tb.Add(key, Segment{Seq: isn + 4, Flags: FlagURG, Urgent: 2, Payload: []byte("dXef")}, 0)
	wantReadings(t, tb, f, "abcdef")
}

func TestBadChecksumIgnored(t *testing.T) {
	tb := NewTable(Limits{}, nil)
	syn(tb, key)
	tb.Add(key, Segment{Seq: isn + 1, Payload: []byte("fake"), BadChecksum: true}, 0)
	f := seg(tb, key, 0, "real")
	wantReadings(t, tb, f, "real")
	if tb.Stats().Ignored != 1 {
		t.Fatalf("stats %+v", tb.Stats())
	}
}

func TestSynResetsAndRSTEnds(t *testing.T) {
	tb := NewTable(Limits{}, nil)
	syn(tb, key)
	seg(tb, key, 0, "old connection")
	f := tb.Add(key, Segment{Seq: 5000, Flags: FlagSYN, Payload: []byte("syn data")}, 0)
	f2 := tb.Add(key, Segment{Seq: 5001, Payload: []byte("new")}, 0)
	if f != f2 {
		t.Fatal("a new flow after the SYN")
	}
	wantReadings(t, tb, f2, "new")
	if tb.Add(key, Segment{Seq: 5004, Flags: FlagRST}, 0) != nil || tb.Get(key) != nil {
		t.Fatal("RST kept the flow")
	}
}

func TestMidStreamRebase(t *testing.T) {
	tb := NewTable(Limits{}, nil)
	tb.Add(key, Segment{Seq: 106, Payload: []byte("world")}, 0)
	f := tb.Add(key, Segment{Seq: 100, Payload: []byte("hello ")}, 0)
	wantReadings(t, tb, f, "hello world")
	if f.HaveISN() {
		t.Fatal("ISN without a SYN")
	}
}

func TestLimits(t *testing.T) {
	tb := NewTable(Limits{Bytes: 8, Flows: 3, Idle: time.Second, Variants: 2}, nil)
	syn(tb, key)
	f := seg(tb, key, 0, "0123456789")
	wantReadings(t, tb, f, "01234567")
	if !tb.Full(f) {
		t.Fatal("not full at Limits.Bytes")
	}
	seg(tb, key, 0, "a")
	seg(tb, key, 0, "b")
	if f.Variants() != 2 || !f.Ambiguous {
		t.Fatalf("variants %d ambiguous %v", f.Variants(), f.Ambiguous)
	}
	for i := range 10 {
		k := key
		k.SPort = uint16(i)
		syn(tb, k)
	}
	st := tb.Stats()
	if st.Flows != 3 || st.Evicted != 8 || tb.Get(key) != nil {
		t.Fatalf("stats %+v", st)
	}
	tb.Add(key, Segment{Seq: 1, Flags: FlagSYN}, int64(2*time.Second))
	if st := tb.Stats(); st.Flows != 1 || st.Expired != 3 {
		t.Fatalf("stats %+v", st)
	}
}

func TestMemoryBound(t *testing.T) {
	tb := NewTable(Limits{Memory: 64 << 10}, nil)
	data := make([]byte, 1000)
	for i := range 1000 {
		k := key
		k.SPort = uint16(i)
		tb.Add(k, Segment{Seq: 1, Payload: data}, 0)
		if st := tb.Stats(); st.Bytes > 64<<10 {
			t.Fatalf("after %d flows: %+v", i, st)
		}
	}
	st := tb.Stats()
	if st.Evicted == 0 || st.Flows == 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestFinishKeepsWhatWasRead(t *testing.T) {
	tb := NewTable(Limits{}, nil)
	syn(tb, key)
	f := seg(tb, key, 0, "fake!")
	tb.Finish(f, "result")
	seg(tb, key, 5, "later data, not held")
	if st := tb.Stats(); st.Bytes > 16 || f.Changed || !f.Settled(isn+1+5) || f.Settled(isn+1+4) {
		t.Fatalf("stats %+v changed %v", st, f.Changed)
	}
	if g := seg(tb, key, 0, "fake!"); g != f || g.Result != "result" || f.Changed {
		t.Fatal("a retransmission changed the finished flow")
	}
	seg(tb, key, 0, "real!")
	if !f.Changed {
		t.Fatal("different bytes over the finished part: not Changed")
	}
	wantReadings(t, tb, f, "fake!", "real!")
}

// TestFailKeepsHolding: a flow given up on (its first bytes were not what
// the caller reads) keeps holding later bytes, so that real bytes over a
// fake first segment reopen it with everything sent since.
func TestFailKeepsHolding(t *testing.T) {
	tb := NewTable(Limits{}, nil)
	syn(tb, key)
	f := seg(tb, key, 0, "\x00\x00\x00")
	tb.Fail(f, "not a handshake record")
	if f.Settled(isn+1+3) || !f.Settled(isn+1+DefaultBytes) {
		t.Fatal("a failed flow settles at its limit, not at what it read")
	}
	seg(tb, key, 5, "world")
	if f.Changed {
		t.Fatal("new bytes are not a change")
	}
	seg(tb, key, 0, "hello")
	if !f.Changed {
		t.Fatal("bytes over the fake: not Changed")
	}
	tb.Reopen(f)
	wantReadings(t, tb, f, "\x00\x00\x00loworld", "helloworld") // the gap filled in every reading
}
