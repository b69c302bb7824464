// Package luapattern is a Lua 5.1 pattern matcher whose running time a
// caller can bound.
//
// It owns the matching half of Lua 5.1's string library (lstrlib.c): the
// same backtracking algorithm, the same pattern language (character
// classes, sets, anchors, the quantifiers * + - ?, captures, position
// captures, back-references, %b and %f) and the same error messages. The
// string functions built on it (find, match, gmatch, gsub) live with their
// Lua bindings in package host.
//
// Guarantees: Find never panics on any subject or pattern (it is fuzzed);
// it calls the Matcher's Check function every CheckEvery units of work, so
// a caller that returns an error from Check (or raises one) stops a
// catastrophic backtrack within microseconds; recursion is bounded by
// MaxDepth ("pattern too complex"), as in Lua 5.2 and later.
//
// Deviation from C Lua 5.1, on purpose: a pattern is a byte string of known
// length, so a NUL byte in it is an ordinary character (C Lua 5.1 reads
// patterns as C strings and stops at the first NUL; Lua 5.2 and gopher-lua
// do as this package does).
//
// Costs: matching allocates nothing; a Matcher is about 600 bytes and may be
// reused for any number of Find calls.
package luapattern

import (
	"fmt"
	"strings"
)

const (
	// MaxCaptures is LUA_MAXCAPTURES: captures one pattern may open.
	MaxCaptures = 32
	// MaxDepth is Lua's MAXCCALLS for patterns: how deep the matcher may
	// recurse (one level per quantified item, '?' and capture).
	MaxDepth = 200
)

const (
	capUnfinished = -1
	capPosition   = -2
)

// Error is an error in a pattern or in the use of its captures; its text is
// Lua 5.1's.
type Error struct{ Msg string }

func (e *Error) Error() string { return e.Msg }

// abort carries an error out of the recursion to Find's recover.
type abort struct{ err error }

// Matcher matches patterns. The zero value works and never checks its
// budget; set Check and CheckEvery to bound the time it runs.
type Matcher struct {
	// Check is called every CheckEvery units of work (a unit is one step
	// of the matcher, about the work of matching one character). A non-nil
	// error stops the match and Find returns it. Check may also panic (a
	// Lua error, say): the panic passes through unchanged.
	Check      func() error
	CheckEvery int

	src, pat string
	level    int
	depth    int
	work     int
	capture  [MaxCaptures]struct{ init, len int }
}

// Capture is one value a match yields: the bytes src[Start:End], or, for a
// position capture "()", the position Start (0-based; Lua shows Start+1).
type Capture struct {
	Start, End int
	Position   bool
}

// Find looks for pat in src starting at byte offset init (0 <= init <=
// len(src)), trying each position from init to len(src) in turn, or only
// init when anchored. The pattern is taken as it is: a leading '^' is a
// literal unless the caller strips it and sets anchored, as string.find
// does and string.gmatch does not. It returns the match's bounds, or start
// -1 when there is none. After a match, Level and Capture describe its
// captures.
func (m *Matcher) Find(src, pat string, init int, anchored bool) (start, end int, err error) {
	defer func() {
		if r := recover(); r != nil {
			a, ok := r.(abort)
			if !ok {
				panic(r)
			}
			start, end, err = -1, -1, a.err
		}
	}()
	if init < 0 || init > len(src) {
		return -1, -1, nil
	}
	m.src, m.pat = src, pat
	first := literalFirst(pat)
	for s := init; ; s++ {
		if first >= 0 && !anchored {
			// A match can only start at the pattern's first character.
			i := strings.IndexByte(src[s:], byte(first))
			if i < 0 {
				return -1, -1, nil
			}
			s += i
		}
		m.level, m.depth = 0, 0
		if e := m.match(s, 0); e >= 0 {
			return s, e, nil
		}
		if anchored || s >= len(src) {
			return -1, -1, nil
		}
	}
}

// literalFirst returns the character every match of pat starts with, or -1
// when pat does not start with a plain character that must be present.
func literalFirst(pat string) int {
	if pat == "" || strings.IndexByte("$()%[.", pat[0]) >= 0 {
		return -1
	}
	if len(pat) > 1 && strings.IndexByte("*?-", pat[1]) >= 0 {
		return -1
	}
	return int(pat[0])
}

// Level is the number of captures of the last match.
func (m *Matcher) Level() int { return m.level }

// Capture returns capture i of the last match, which spanned src[s:e]. As
// in Lua, capture 0 of a pattern without captures is the whole match.
func (m *Matcher) Capture(i, s, e int) (Capture, error) {
	if i >= m.level {
		if i == 0 {
			return Capture{Start: s, End: e}, nil
		}
		return Capture{}, &Error{"invalid capture index"}
	}
	c := m.capture[i]
	switch c.len {
	case capUnfinished:
		return Capture{}, &Error{"unfinished capture"}
	case capPosition:
		return Capture{Start: c.init, End: c.init, Position: true}, nil
	}
	return Capture{Start: c.init, End: c.init + c.len}, nil
}

func (m *Matcher) fail(format string, args ...any) {
	panic(abort{&Error{fmt.Sprintf(format, args...)}})
}

// spend records n units of work and calls Check when CheckEvery are due.
func (m *Matcher) spend(n int) {
	m.work += n
	if m.work >= m.CheckEvery && m.Check != nil {
		m.work = 0
		if err := m.Check(); err != nil {
			panic(abort{err})
		}
	}
}

// match is lstrlib.c's match: it returns the end of the match of
// pat[p:] at src[s:], or -1.
func (m *Matcher) match(s, p int) int {
	if m.depth >= MaxDepth {
		m.fail("pattern too complex")
	}
	m.depth++
	r := m.doMatch(s, p)
	m.depth--
	return r
}

func (m *Matcher) doMatch(s, p int) int {
	pat := m.pat
	for {
		m.spend(1)
		if p == len(pat) {
			return s
		}
		switch pat[p] {
		case '(':
			if p+1 < len(pat) && pat[p+1] == ')' {
				return m.startCapture(s, p+2, capPosition)
			}
			return m.startCapture(s, p+1, capUnfinished)
		case ')':
			return m.endCapture(s, p+1)
		case '$':
			if p+1 == len(pat) {
				if s == len(m.src) {
					return s
				}
				return -1
			}
		case '%':
			if p+1 < len(pat) {
				switch c := pat[p+1]; {
				case c == 'b':
					if s = m.matchBalance(s, p+2); s < 0 {
						return -1
					}
					p += 4
					continue
				case c == 'f':
					if !m.matchFrontier(s, p+2) {
						return -1
					}
					p = m.classEnd(p + 2)
					continue
				case isDigit(c):
					if s = m.matchCapture(s, c); s < 0 {
						return -1
					}
					p += 2
					continue
				}
			}
		}
		ep := m.classEnd(p)
		matched := s < len(m.src) && m.singleMatch(m.src[s], p, ep)
		if ep < len(pat) {
			switch pat[ep] {
			case '?':
				if matched {
					if r := m.match(s+1, ep+1); r >= 0 {
						return r
					}
				}
				p = ep + 1
				continue
			case '*':
				return m.maxExpand(s, p, ep)
			case '+':
				if !matched {
					return -1
				}
				return m.maxExpand(s+1, p, ep)
			case '-':
				return m.minExpand(s, p, ep)
			}
		}
		if !matched {
			return -1
		}
		s++
		p = ep
	}
}

func (m *Matcher) maxExpand(s, p, ep int) int {
	i := 0
	for s+i < len(m.src) && m.singleMatch(m.src[s+i], p, ep) {
		i++
	}
	m.spend(i)
	for ; i >= 0; i-- {
		if r := m.match(s+i, ep+1); r >= 0 {
			return r
		}
	}
	return -1
}

func (m *Matcher) minExpand(s, p, ep int) int {
	for {
		if r := m.match(s, ep+1); r >= 0 {
			return r
		}
		if s < len(m.src) && m.singleMatch(m.src[s], p, ep) {
			s++
		} else {
			return -1
		}
	}
}

func (m *Matcher) startCapture(s, p, what int) int {
	if m.level >= MaxCaptures {
		m.fail("too many captures")
	}
	m.capture[m.level].init = s
	m.capture[m.level].len = what
	m.level++
	r := m.match(s, p)
	if r < 0 {
		m.level--
	}
	return r
}

func (m *Matcher) endCapture(s, p int) int {
	l := m.captureToClose()
	m.capture[l].len = s - m.capture[l].init
	r := m.match(s, p)
	if r < 0 {
		m.capture[l].len = capUnfinished
	}
	return r
}

func (m *Matcher) captureToClose() int {
	for l := m.level - 1; l >= 0; l-- {
		if m.capture[l].len == capUnfinished {
			return l
		}
	}
	m.fail("invalid pattern capture")
	return 0
}

// matchCapture matches a back-reference %1-%9 (c is the digit).
func (m *Matcher) matchCapture(s int, c byte) int {
	l := int(c) - '1'
	if l < 0 || l >= m.level || m.capture[l].len == capUnfinished {
		m.fail("invalid capture index")
	}
	init, n := m.capture[l].init, m.capture[l].len
	if n < 0 { // a position capture never matches (C compares a huge size_t)
		return -1
	}
	m.spend(n / 64)
	if len(m.src)-s >= n && m.src[s:s+n] == m.src[init:init+n] {
		return s + n
	}
	return -1
}

// matchBalance matches %bxy at src[s:], p being at x.
func (m *Matcher) matchBalance(s, p int) int {
	if p+1 >= len(m.pat) {
		m.fail("unbalanced pattern")
	}
	if s >= len(m.src) || m.src[s] != m.pat[p] {
		return -1
	}
	b, e := m.pat[p], m.pat[p+1]
	start, cont := s, 1
	for s++; s < len(m.src); s++ {
		if c := m.src[s]; c == e {
			if cont--; cont == 0 {
				m.spend(s - start)
				return s + 1
			}
		} else if c == b {
			cont++
		}
	}
	m.spend(s - start)
	return -1
}

// matchFrontier reports whether %f[set] (p at '[') holds at src position s:
// the previous byte (NUL at the start) is not in set and the current one
// (NUL at the end) is.
func (m *Matcher) matchFrontier(s, p int) bool {
	if p >= len(m.pat) || m.pat[p] != '[' {
		m.fail("missing '[' after '%%f' in pattern")
	}
	ep := m.classEnd(p)
	var prev, cur byte
	if s > 0 {
		prev = m.src[s-1]
	}
	if s < len(m.src) {
		cur = m.src[s]
	}
	return !m.matchBracketClass(prev, p, ep-1) && m.matchBracketClass(cur, p, ep-1)
}

// classEnd returns the end of the single-character class at pat[p].
func (m *Matcher) classEnd(p int) int {
	pat := m.pat
	c := pat[p]
	p++
	switch c {
	case '%':
		if p >= len(pat) {
			m.fail("malformed pattern (ends with '%%')")
		}
		return p + 1
	case '[':
		start := p
		if p < len(pat) && pat[p] == '^' {
			p++
		}
		for { // the first character of a set may be ']'
			if p >= len(pat) {
				m.fail("malformed pattern (missing ']')")
			}
			c := pat[p]
			p++
			if c == '%' && p < len(pat) {
				p++
			}
			if p < len(pat) && pat[p] == ']' {
				break
			}
		}
		m.spend((p - start) / 16)
		return p + 1
	}
	return p
}

func (m *Matcher) singleMatch(c byte, p, ep int) bool {
	switch m.pat[p] {
	case '.':
		return true
	case '%':
		return matchClass(c, m.pat[p+1])
	case '[':
		return m.matchBracketClass(c, p, ep-1)
	}
	return m.pat[p] == c
}

// matchBracketClass matches c against the set pat[p:ec+1] ('[' at p, ']'
// at ec).
func (m *Matcher) matchBracketClass(c byte, p, ec int) bool {
	pat := m.pat
	sig := true
	if pat[p+1] == '^' {
		sig = false
		p++
	}
	for p++; p < ec; p++ {
		switch {
		case pat[p] == '%':
			p++
			if matchClass(c, pat[p]) {
				return sig
			}
		case pat[p+1] == '-' && p+2 < ec:
			p += 2
			if pat[p-2] <= c && c <= pat[p] {
				return sig
			}
		case pat[p] == c:
			return sig
		}
	}
	return !sig
}

// matchClass matches c against the class letter cl of %cl, in the C
// locale; an upper-case letter is the complement, anything else is itself.
func matchClass(c, cl byte) bool {
	var res bool
	switch cl | 0x20 {
	case 'a':
		res = isAlpha(c)
	case 'c':
		res = c < 32 || c == 127
	case 'd':
		res = isDigit(c)
	case 'l':
		res = 'a' <= c && c <= 'z'
	case 'p':
		res = c > 32 && c < 127 && !isAlpha(c) && !isDigit(c)
	case 's':
		res = c == ' ' || ('\t' <= c && c <= '\r')
	case 'u':
		res = 'A' <= c && c <= 'Z'
	case 'w':
		res = isAlpha(c) || isDigit(c)
	case 'x':
		res = isDigit(c) || ('a' <= c|0x20 && c|0x20 <= 'f')
	case 'z':
		res = c == 0
	default:
		return cl == c
	}
	if 'a' <= cl && cl <= 'z' {
		return res
	}
	return !res
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }
func isAlpha(c byte) bool { return 'a' <= c|0x20 && c|0x20 <= 'z' }
