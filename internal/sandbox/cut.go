package sandbox

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxErrorText is the most bytes of a script's error message (or of a value
// quoted in a failure message) that luafw prints: a script can raise a
// message of many MiB, and a failure is logged per packet.
const MaxErrorText = 512

// Cut returns s shortened to at most n bytes plus a marker saying how long
// it was, without splitting a UTF-8 sequence; s itself when it fits. Control
// characters (but tab and newline) and invalid UTF-8 in what is kept become '?', so that the
// text's quoted or escaped form (log handlers, %q) stays within a few bytes
// of n. It looks at no more than n+utf8.UTFMax bytes of s.
func Cut(s string, n int) string {
	if len(s) <= n && printable(s) {
		return s
	}
	long := len(s) > n
	if long {
		end := n
		for end > 0 && !utf8.RuneStart(s[end]) {
			end--
		}
		s = s[:end]
	}
	var b strings.Builder
	b.Grow(len(s) + 32)
	for _, r := range s {
		if r == utf8.RuneError || !unicode.IsPrint(r) && r != '\t' && r != '\n' {
			b.WriteByte('?')
			continue
		}
		b.WriteRune(r)
	}
	if long {
		b.WriteString("...[cut]")
	}
	return b.String()
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 && c != '\t' && c != '\n' || c >= 0x7f {
			return false
		}
	}
	return true
}

// QuoteCut is strconv.Quote of Cut(s, n): a script's string in a message,
// quoted, at most about n+10 bytes.
func QuoteCut(s string, n int) string { return strconv.Quote(Cut(s, n)) }
