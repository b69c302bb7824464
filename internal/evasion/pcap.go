package evasion

import (
	"io"
	"time"

	"github.com/luafw/luafw/pcap"
)

// Start is the corpus's first timestamp.
var Start = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// WritePcap writes the cases' packets to w (raw IP), one case after the
// other, each starting a minute after the previous one's start (so that no
// case's flows are idle-expired or kept by another's clock), and returns
// the index of each packet's case and packet, in file order.
func WritePcap(w io.Writer, cases []Case) ([][2]int, error) {
	pw, err := pcap.NewWriter(w, pcap.LinkTypeRaw)
	if err != nil {
		return nil, err
	}
	var order [][2]int
	at := Start
	for ci, c := range cases {
		for pi, p := range c.Packets {
			if err := pw.WritePacket(at.Add(p.At), p.Data); err != nil {
				return nil, err
			}
			order = append(order, [2]int{ci, pi})
		}
		at = at.Add(time.Minute)
	}
	return order, nil
}

// Evaded reports whether every byte of c's message reached the server in
// a packet that was accepted (accepted[i] for c.Packets[i]).
func Evaded(c *Case, accepted []bool) bool {
	got := make([]bool, c.MsgLen)
	for i, p := range c.Packets {
		if !p.Real || !accepted[i] {
			continue
		}
		for _, r := range p.Msg {
			for j := r[0]; j < r[1]; j++ {
				got[j] = true
			}
		}
	}
	for _, g := range got {
		if !g {
			return false
		}
	}
	return c.MsgLen > 0
}
