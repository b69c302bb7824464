package dnsmsg

import (
	"bytes"
	"strings"
	"testing"
)

func query(t testing.TB, name string, qtype uint16) []byte {
	t.Helper()
	b, err := AppendQuery(nil, 0x1234, name, qtype)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseQuery(t *testing.T) {
	var m Msg
	if err := m.Parse(query(t, "WWW.Example.COM.", 28)); err != nil {
		t.Fatal(err)
	}
	if m.ID != 0x1234 || m.QR || m.Opcode != 0 || !m.RD || m.QDCount != 1 || m.ANCount != 0 {
		t.Fatalf("header = %+v", m.Header)
	}
	if !m.HasQuestion || string(m.QName()) != "www.example.com" || m.QType != 28 || m.QClass != 1 {
		t.Fatalf("question = %q %d %d (has %v)", m.QName(), m.QType, m.QClass, m.HasQuestion)
	}
	if TypeString(m.QType) != "AAAA" || ClassString(m.QClass) != "IN" {
		t.Fatalf("mnemonics %q %q", TypeString(m.QType), ClassString(m.QClass))
	}
}

func TestParseResponseHeader(t *testing.T) {
	b := query(t, "example.org", 1)
	b[2], b[3] = 0x84|0x28, 0x83 // QR, opcode 5 (update), AA; RA, rcode 3
	b[7] = 2                     // ANCOUNT 2
	var m Msg
	if err := m.Parse(b); err != nil {
		t.Fatal(err)
	}
	if !m.QR || m.Opcode != 5 || !m.AA || !m.RA || m.RCode != 3 || m.ANCount != 2 {
		t.Fatalf("header = %+v", m.Header)
	}
}

func TestRootAndNoQuestion(t *testing.T) {
	var m Msg
	if err := m.Parse(query(t, ".", 2)); err != nil || !m.HasQuestion || len(m.QName()) != 0 {
		t.Fatalf("root: err %v has %v name %q", err, m.HasQuestion, m.QName())
	}
	b := query(t, "a.b", 1)[:12]
	b[5] = 0 // QDCOUNT 0
	if err := m.Parse(b); err != nil || m.HasQuestion || m.QDCount != 0 {
		t.Fatalf("no question: err %v has %v", err, m.HasQuestion)
	}
}

func TestEscapes(t *testing.T) {
	// Labels "a.b", "x\\y", "\x00\xff", "Z " -> a\.b.x\\y.\000\255.z\032
	b := []byte{0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0,
		3, 'a', '.', 'b', 3, 'x', '\\', 'y', 2, 0, 0xff, 2, 'Z', ' ', 0, 0, 1, 0, 1}
	var m Msg
	if err := m.Parse(b); err != nil {
		t.Fatal(err)
	}
	if want := `a\.b.x\\y.\000\255.z\032`; string(m.QName()) != want {
		t.Fatalf("name %q, want %q", m.QName(), want)
	}
}

func TestCompression(t *testing.T) {
	hdr := []byte{0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0}
	cases := []struct {
		name string
		body []byte // from offset 12
		want string
		err  error
	}{
		// A name whose label is followed by a pointer back to that label:
		// 12: 1 'a' (c0 0c) would read a.a.a... forever.
		{"self loop", []byte{1, 'a', 0xc0, 12, 0, 1, 0, 1}, "", ErrBadPointer},
		{"points at itself", []byte{0xc0, 12, 0, 1, 0, 1}, "", ErrBadPointer},
		{"points forward", []byte{0xc0, 14, 0, 0, 1, 0, 1}, "", ErrBadPointer},
		{"points into header", []byte{0xc0, 2, 0, 1, 0, 1}, "", ErrBadPointer},
		{"cut pointer", []byte{1, 'a', 0xc0}, "", ErrTruncated},
		{"bad label type", []byte{0x40, 0, 1, 0, 1}, "", ErrBadLabel},
		{"reserved label type", []byte{0x80, 0, 1, 0, 1}, "", ErrBadLabel},
		{"plain", []byte{3, 'c', 'o', 'm', 0, 0, 1, 0, 1}, "com", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var m Msg
			err := m.Parse(append(append([]byte{}, hdr...), tc.body...))
			if err != tc.err {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			if err == nil && string(m.QName()) != tc.want {
				t.Fatalf("name %q, want %q", m.QName(), tc.want)
			}
			if err != nil && (m.HasQuestion || len(m.QName()) != 0) {
				t.Fatalf("failed parse left a question: %q", m.QName())
			}
		})
	}
}

// TestPointerFollowed builds a message whose question name continues through
// a backwards pointer into an earlier name, as the parser must follow it
// when asked at a later offset.
func TestPointerFollowed(t *testing.T) {
	// 12: 7 "example" 3 "com" 0 ; 25: 3 "www" c0 0c ; then type/class.
	b := []byte{0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0,
		7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 3, 'c', 'o', 'm', 0,
		3, 'w', 'w', 'w', 0xc0, 12, 0, 5, 0, 1}
	var m Msg
	next, err := m.readName(b, 25)
	if err != nil {
		t.Fatal(err)
	}
	if string(m.QName()) != "www.example.com" || next != 31 {
		t.Fatalf("name %q next %d", m.QName(), next)
	}
	// A pointer chain longer than MaxPointers: each pointer points at the
	// one before it, ending at a root label at 12.
	chain := []byte{0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0}
	for i := 0; i <= MaxPointers; i++ {
		target := 12 + 2*i - 1
		if i == 0 {
			target = 12
		}
		chain = append(chain, 0xc0|byte(target>>8), byte(target))
	}
	m = Msg{}
	if _, err := m.readName(chain, len(chain)-2); err != ErrPointerLoop {
		t.Fatalf("long chain: err %v, want %v", err, ErrPointerLoop)
	}
	if _, err := m.readName(chain, 13+2*(MaxPointers-1)); err != nil {
		t.Fatalf("chain of %d pointers: %v", MaxPointers, err)
	}
}

func TestNameLimit(t *testing.T) {
	label := strings.Repeat("a", 63)
	ok := label + "." + label + "." + label + "." + strings.Repeat("b", 61) // 255 on the wire
	var m Msg
	if err := m.Parse(query(t, ok, 1)); err != nil || string(m.QName()) != ok {
		t.Fatalf("255-byte name: %v", err)
	}
	// Hand-build a 256-byte name (AppendName refuses it).
	b := query(t, ok, 1)
	b = append(b[:12+64*3], 62)
	b = append(b, bytes.Repeat([]byte{'b'}, 62)...)
	b = append(b, 0, 0, 1, 0, 1)
	if err := m.Parse(b); err != ErrNameTooLong {
		t.Fatalf("256-byte name: err %v", err)
	}
	if _, err := AppendName(nil, ok+"b"); err != ErrNameTooLong {
		t.Fatalf("AppendName over the limit: %v", err)
	}
	if _, err := AppendName(nil, "a..b"); err == nil {
		t.Fatal("AppendName accepted an empty label")
	}
}

// TestEveryTruncation cuts a valid query at every length: each must fail
// cleanly, the header ones with ErrShort and the rest with ErrTruncated.
func TestEveryTruncation(t *testing.T) {
	b := query(t, "ads.tracker.example", 1)
	var m Msg
	for n := 0; n < len(b); n++ {
		err := m.Parse(b[:n])
		want := ErrTruncated
		if n < 12 {
			want = ErrShort
		}
		if err != want {
			t.Fatalf("cut at %d: err %v, want %v", n, err, want)
		}
		if m.HasQuestion {
			t.Fatalf("cut at %d: has a question", n)
		}
	}
	if err := m.Parse(b); err != nil {
		t.Fatal(err)
	}
}

func TestParseDoesNotAllocate(t *testing.T) {
	b := query(t, "www.Example.com", 1)
	var m Msg
	allocs := testing.AllocsPerRun(100, func() {
		if m.Parse(b) != nil {
			t.Fatal("parse failed")
		}
	})
	if allocs != 0 {
		t.Fatalf("Parse allocates %v times", allocs)
	}
}

func BenchmarkParse(b *testing.B) {
	q := query(b, "www.example.com", 1)
	var m Msg
	b.ReportAllocs()
	b.SetBytes(int64(len(q)))
	for b.Loop() {
		if m.Parse(q) != nil {
			b.Fatal("parse failed")
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, name := range []string{"example.com", "", "a.b.c.d.e.f", "xn--bcher-kva.example"} {
		b, _ := AppendQuery(nil, 1, name, 1)
		f.Add(b)
	}
	f.Add([]byte{0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 'a', 0xc0, 12, 0, 1, 0, 1})
	f.Add([]byte{0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12})
	f.Fuzz(func(t *testing.T, b []byte) {
		var m Msg
		err := m.Parse(b)
		if err == nil && m.QDCount > 0 && !m.HasQuestion {
			t.Fatal("no error, QDCount > 0, but no question")
		}
		if err != nil && m.HasQuestion {
			t.Fatal("error and a question")
		}
		name := m.QName()
		if len(name) > maxNameText {
			t.Fatalf("name of %d bytes", len(name))
		}
		for _, c := range name {
			if c <= 0x20 || c >= 0x7f || c >= 'A' && c <= 'Z' {
				t.Fatalf("unescaped byte %#x in %q", c, name)
			}
		}
		// A name that parsed re-encodes (when it has no escapes) to a query
		// that parses to the same name.
		if m.HasQuestion && !bytes.ContainsRune(name, '\\') && len(name) > 0 {
			q, err := AppendQuery(nil, m.ID, string(name), m.QType)
			if err != nil {
				t.Fatalf("re-encoding %q: %v", name, err)
			}
			var m2 Msg
			if err := m2.Parse(q); err != nil || !bytes.Equal(m2.QName(), name) {
				t.Fatalf("round trip of %q: %q, %v", name, m2.QName(), err)
			}
		}
	})
}
