package packet

import "strings"

// The one table of TCP flags: the names scripts and matches use (pkt.tcp.syn,
// tcp_flags = "syn,!ack") and tcpdump's letters (packet.tcp{flags = "SA"}),
// both indexed by bit number (fin is bit 0, TCPFin).
const (
	tcpFlagLetters = "FSRPAUEC"
	// TCPFlagNameList lists the flag names, for error messages.
	TCPFlagNameList = "fin, syn, rst, psh, ack, urg, ece, cwr"
	// TCPFlagLetterList lists the flag letters, for error messages.
	TCPFlagLetterList = "F, S, R, P, A, U, E, C"
)

var tcpFlagNames = [8]string{"fin", "syn", "rst", "psh", "ack", "urg", "ece", "cwr"}

// TCPFlagByName returns the bit of the flag called name ("syn").
func TCPFlagByName(name string) (bit uint8, ok bool) {
	for i, n := range tcpFlagNames {
		if n == name {
			return 1 << i, true
		}
	}
	return 0, false
}

// TCPFlagByLetter returns the bit of the flag with tcpdump's letter r ('S');
// lower case is accepted.
func TCPFlagByLetter(r rune) (bit uint8, ok bool) {
	i := strings.IndexRune(tcpFlagLetters, r)
	if i < 0 && r >= 'a' && r <= 'z' {
		i = strings.IndexRune(tcpFlagLetters, r-'a'+'A')
	}
	if i < 0 {
		return 0, false
	}
	return 1 << i, true
}

// TCPFlagName returns the name of flag bit number i (0..7).
func TCPFlagName(i int) string { return tcpFlagNames[i] }
