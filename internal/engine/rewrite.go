package engine

import (
	"fmt"

	"github.com/luafw/luafw/host/packet"
)

// Rewrites. The first rewrite of a packet copies it into a buffer of the
// Ctx's own (the handed-in Packet.Data is never written) and points the Ctx
// at that copy, so later callbacks, the packet view and the Decision all see
// the rewritten bytes. A packet no callback rewrites is never copied.
//
// Each rewrite recomputes the IPv4 header checksum and the transport
// checksum in full (see host/packet/checksum.go for why not incrementally).
//
// TCP payloads keep their length: a longer or shorter segment would shift
// the sequence numbers both ends see, and the kernel adjusts them only for
// connections with a seqadj extension (NAT helpers, synproxy) and only when
// the verdict carries NFQA_CT, which luafw does not send (and which this
// project's kernels refuse). The ends would then disagree about every later
// byte, so such rewrites are refused.

// Rewritten reports whether a callback has rewritten the packet.
func (c *Ctx) Rewritten() bool { return c.pkt == &c.own }

// Data returns the packet's bytes as the earlier callbacks left them.
func (c *Ctx) Data() []byte { return c.pkt.Data }

// writable returns the packet decoded and in a buffer of the Ctx's own,
// copying it on the first rewrite.
func (c *Ctx) writable() (*packet.Parsed, []byte, error) {
	p := c.Parsed()
	if err := packet.Rewritable(p); err != nil {
		return nil, nil, err
	}
	if !c.Rewritten() {
		// The copy decodes exactly as the original (Parsed holds offsets,
		// not pointers), so p stays valid. No room is kept for growth: a
		// payload that grows is copied once more by packet.SetPayload,
		// cheaper than every rewrite paying for a bigger buffer.
		c.own = *c.pkt
		c.own.Data = append([]byte(nil), c.pkt.Data...)
		c.pkt = &c.own
	}
	return p, c.own.Data, nil
}

// rewrote records new packet bytes and fixes the checksums. redecode says
// whether what was decoded or cached from the old bytes may be stale (any
// change but the header fields the caller updated in c.parsed itself).
func (c *Ctx) rewrote(b []byte, redecode bool) {
	c.own.Data = b
	if redecode {
		c.parsed.Decode(b)
		c.decoded = true
		c.src, c.dst = nil, nil
	}
	packet.FixChecksums(&c.parsed, b)
}

// SetPayload replaces the transport payload (TCP only at the same length).
func (c *Ctx) SetPayload(payload []byte) error {
	if err := packet.CheckPayload(c.Parsed(), len(payload)); err != nil {
		return err
	}
	p, b, err := c.writable()
	if err != nil {
		return err
	}
	nb, err := packet.SetPayload(p, b, payload)
	if err != nil {
		return err
	}
	c.rewrote(nb, len(nb) != len(b))
	return nil
}

// WriteAt overwrites raw bytes of the IP packet at off (from the IP header);
// the write must lie inside the packet. Length fields are the caller's
// business; checksums are recomputed.
func (c *Ctx) WriteAt(off int, data []byte) error {
	if off < 0 || off > len(c.pkt.Data) || len(data) > len(c.pkt.Data)-off {
		return packet.ErrOutOfRange
	}
	_, b, err := c.writable()
	if err != nil {
		return err
	}
	if err := packet.WriteAt(b, off, data); err != nil {
		return err
	}
	c.rewrote(b, true)
	return nil
}

// SetTTL sets the IPv4 TTL or the IPv6 hop limit.
func (c *Ctx) SetTTL(ttl uint8) error {
	p, b, err := c.writable()
	if err != nil {
		return err
	}
	packet.SetTTL(p, b, ttl)
	p.TTL = ttl
	c.rewrote(b, false)
	return nil
}

// TrafficClass returns the DSCP and ECN bits (IPv4 TOS, IPv6 traffic class).
func (c *Ctx) TrafficClass() (dscp, ecn uint8) {
	p := c.Parsed()
	if p.Family == 0 {
		return 0, 0
	}
	tc := packet.TrafficClass(p, c.pkt.Data)
	return tc >> 2, tc & 3
}

// SetDSCP sets the six DSCP bits (0..63).
func (c *Ctx) SetDSCP(dscp uint8) error {
	if dscp > 63 {
		return fmt.Errorf("dscp %d: %w (0..63)", dscp, packet.ErrBadFieldValue)
	}
	return c.setTrafficClass(0xfc, dscp<<2)
}

// SetECN sets the two ECN bits (0..3).
func (c *Ctx) SetECN(ecn uint8) error {
	if ecn > 3 {
		return fmt.Errorf("ecn %d: %w (0..3)", ecn, packet.ErrBadFieldValue)
	}
	return c.setTrafficClass(0x03, ecn)
}

func (c *Ctx) setTrafficClass(mask, bits uint8) error {
	p, b, err := c.writable()
	if err != nil {
		return err
	}
	packet.SetTrafficClass(p, b, packet.TrafficClass(p, b)&^mask|bits)
	c.rewrote(b, false)
	return nil
}

// ClampMSS lowers the MSS option of a TCP SYN to at most mss and reports
// whether it changed. A packet that is not a SYN, or whose MSS is already
// low enough, is not copied.
func (c *Ctx) ClampMSS(mss uint16) (bool, error) {
	p := c.Parsed()
	if p.Proto != packet.ProtoTCP || p.TCPFlags&packet.TCPSyn == 0 {
		return false, packet.ErrNotSYN
	}
	if err := packet.Rewritable(p); err != nil {
		return false, err
	}
	// Look first on the original bytes (ClampMSS on a copy of the options
	// would cost a packet copy for the common no-change case).
	var probe [60]byte
	if p.PayloadOff < 0 || p.PayloadOff-p.L4Off > len(probe) {
		return false, packet.ErrBadTCPOptions
	}
	hdr := c.pkt.Data[:p.PayloadOff]
	tmp := *p
	tmp.PayloadOff -= p.L4Off
	tmp.L4Off = 0
	n := copy(probe[:], hdr[p.L4Off:])
	if changed, err := packet.ClampMSS(&tmp, probe[:n], mss); !changed || err != nil {
		return false, err
	}
	p, b, err := c.writable()
	if err != nil {
		return false, err
	}
	if _, err := packet.ClampMSS(p, b, mss); err != nil {
		return false, err
	}
	c.rewrote(b, false)
	return true, nil
}
