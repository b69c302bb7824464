package luapattern

import (
	"errors"
	"strings"
	"testing"
)

var errBudget = errors.New("budget gone")

// budgeted returns a matcher whose Check fails after n calls, and the
// count of calls.
func budgeted(n int) (*Matcher, *int) {
	calls := 0
	return &Matcher{CheckEvery: 64, Check: func() error {
		if calls++; calls > n {
			return errBudget
		}
		return nil
	}}, &calls
}

func TestCheckStopsBacktracking(t *testing.T) {
	src := strings.Repeat("a", 400)
	for _, pat := range []string{"a*a*a*a*a*b", "(.-)(.-)(.-)(.-)b", "(a*)*b", "%b()", "(.-)%1%1b"} {
		m, calls := budgeted(100)
		_, _, err := m.Find(src, pat, 0, false)
		if pat == "%b()" {
			// Not catastrophic; it simply fails.
			if err != nil {
				t.Errorf("%s: %v", pat, err)
			}
			continue
		}
		if !errors.Is(err, errBudget) {
			t.Errorf("%s: err %v after %d checks, want the budget error", pat, err, *calls)
		}
	}
}

func TestCheckPanicPassesThrough(t *testing.T) {
	type luaError struct{}
	m := &Matcher{CheckEvery: 1, Check: func() error { panic(luaError{}) }}
	defer func() {
		if r := recover(); r != (luaError{}) {
			t.Fatalf("recovered %v, want the Check function's own panic", r)
		}
	}()
	_, _, _ = m.Find("aaaa", "a*b", 0, false)
	t.Fatal("Find returned although Check panicked")
}

func TestZeroMatcherWorks(t *testing.T) {
	var m Matcher
	s, e, err := m.Find("GET /index.html HTTP/1.1", "(%u+) (%S+)", 0, true)
	if err != nil || s != 0 || e != 15 || m.Level() != 2 {
		t.Fatalf("got %d %d %v level %d", s, e, err, m.Level())
	}
	c, err := m.Capture(1, s, e)
	if err != nil || c.Start != 4 || c.End != 15 || c.Position {
		t.Fatalf("capture 1: %+v %v", c, err)
	}
	if _, err := m.Capture(2, s, e); err == nil || err.Error() != "invalid capture index" {
		t.Fatalf("capture 2: %v", err)
	}
}

func TestDepthLimit(t *testing.T) {
	var m Matcher
	src := strings.Repeat("a", 300)
	if _, _, err := m.Find(src, strings.Repeat("a?", MaxDepth+10), 0, false); err == nil || err.Error() != "pattern too complex" {
		t.Fatalf("deep pattern: %v", err)
	}
	if s, e, err := m.Find(src, strings.Repeat("a?", MaxDepth-10), 0, false); err != nil || s != 0 || e != MaxDepth-10 {
		t.Fatalf("pattern just under the limit: %d %d %v", s, e, err)
	}
	// Long subjects do not deepen the recursion: expansions loop.
	long := strings.Repeat("x", 100000)
	if s, e, err := m.Find(long, "x*.-$", 0, true); err != nil || s != 0 || e != len(long) {
		t.Fatalf("long subject: %d %d %v", s, e, err)
	}
}

func TestErrors(t *testing.T) {
	for pat, want := range map[string]string{
		"%":   "malformed pattern (ends with '%')",
		"[a":  "malformed pattern (missing ']')",
		"%f":  "missing '[' after '%f' in pattern",
		"%fa": "missing '[' after '%f' in pattern",
		"%b":  "unbalanced pattern",
		"%1":  "invalid capture index",
		"a)":  "invalid pattern capture",
	} {
		var m Matcher
		if _, _, err := m.Find("a", pat, 0, false); err == nil || err.Error() != want {
			t.Errorf("%q: %v, want %q", pat, err, want)
		}
	}
	var m Matcher
	deep := strings.Repeat("(", MaxCaptures+1) + "a" + strings.Repeat(")", MaxCaptures+1)
	if _, _, err := m.Find("a", deep, 0, false); err == nil || err.Error() != "too many captures" {
		t.Errorf("33 captures: %v", err)
	}
	if s, _, err := m.Find("a", deep[1:len(deep)-1], 0, false); err != nil || s != 0 || m.Level() != MaxCaptures {
		t.Errorf("32 captures: %d %v level %d", s, err, m.Level())
	}
}

// FuzzFind checks that no input makes Find panic or run past its budget.
func FuzzFind(f *testing.F) {
	for _, seed := range []struct {
		src, pat string
		init     int
	}{
		{"hello", "l+", 0}, {"a(b)c", "%b()", 1}, {"x", "%f[%w]", 0}, {"aaa", "(a)%1", 0},
		{"", "[^]]", 0}, {"abc", "()(.-)()", 2}, {"a$", "$$", 0}, {"\x00", "[%z]", 0},
	} {
		f.Add(seed.src, seed.pat, seed.init, false)
	}
	f.Fuzz(func(t *testing.T, src, pat string, init int, anchored bool) {
		m, _ := budgeted(200)
		s, e, err := m.Find(src, pat, init, anchored)
		if err != nil {
			var perr *Error
			if !errors.As(err, &perr) && !errors.Is(err, errBudget) {
				t.Fatalf("unexpected error type %T: %v", err, err)
			}
			return
		}
		if s < 0 {
			return
		}
		if s < init || e < s || e > len(src) {
			t.Fatalf("match [%d:%d] outside [%d:%d]", s, e, init, len(src))
		}
		for i := 0; i < max(m.Level(), 1); i++ {
			c, err := m.Capture(i, s, e)
			if err == nil && (c.Start < 0 || c.End < c.Start || c.End > len(src)) {
				t.Fatalf("capture %d %+v outside the subject", i, c)
			}
		}
	})
}

func BenchmarkFindMiss(b *testing.B) {
	src := strings.Repeat("Accept: text/html, application/xml; q=0.9\r\n", 12)
	m := &Matcher{CheckEvery: 1024, Check: func() error { return nil }}
	for b.Loop() {
		if s, _, _ := m.Find(src, "Referer: (%S+)", 0, false); s >= 0 {
			b.Fatal("matched")
		}
	}
}
