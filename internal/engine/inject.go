package engine

import (
	"errors"
	"fmt"
	"sync"

	"github.com/luafw/luafw/internal/tokenbucket"

	"github.com/luafw/luafw/host/packet"
)

// Injection. Callbacks do not send anything themselves: Ctx.Send and the
// reply helpers append to the packet's Decision (Injected), and the kernel
// side sends them off the callback (the daemon through a raw socket, with a
// mark luafw's diversions skip; replay writes them to its output; luafw test
// shows them). A per-plugin token bucket keeps a script from flooding.

// Injected is a packet a callback asked to send.
type Injected struct {
	Data   []byte // a complete IPv4 or IPv6 packet, checksums right
	Mark   uint32 // the packet mark to send it with (the daemon adds its own bit)
	Plugin string // who sent it
}

// Defaults of Options.InjectRate and InjectBurst.
const (
	DefaultInjectRate  = 100 // packets per second, per plugin
	DefaultInjectBurst = 100
	// maxInjectPerPacket bounds what one packet's callbacks queue, whatever
	// the rate allows.
	maxInjectPerPacket = 16
)

// ErrInjectRate is returned when a plugin's send budget is spent.
var ErrInjectRate = errors.New("send rate limit reached")

// injectLimiter holds one token bucket per plugin, shared by all workers.
// Its zero value is ready.
type injectLimiter struct {
	mu sync.Mutex
	m  map[string]*tokenbucket.Bucket
}

// take takes one token of plugin's bucket at time now (ns).
func (l *injectLimiter) take(plugin string, now int64, rate, burst float64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.m == nil {
		l.m = map[string]*tokenbucket.Bucket{}
	}
	t, ok := l.m[plugin]
	if !ok {
		b := tokenbucket.Full(burst, now)
		t = &b
		l.m[plugin] = t
	}
	t.Refill(now, rate, burst)
	return t.Take(1)
}

// injectRates are the engine's rate and burst per plugin.
func (e *Engine) injectRates() (rate, burst float64) {
	rate, burst = e.opts.InjectRate, float64(e.opts.InjectBurst)
	if rate <= 0 {
		rate = DefaultInjectRate
	}
	if burst <= 0 {
		burst = DefaultInjectBurst
	}
	return rate, burst
}

// Send asks for data, a complete IPv4 or IPv6 packet, to be sent with the
// packet mark; it returns an error (and queues nothing) when the packet is
// malformed or the plugin's send budget is spent.
func (c *Ctx) Send(data []byte, mark uint32) error {
	var p packet.Parsed
	p.Decode(data)
	if p.Family == 0 || p.Err != "" || p.Truncated || p.Len != len(data) {
		return fmt.Errorf("not a complete IPv4 or IPv6 packet (%d bytes)", len(data))
	}
	return c.queue(data, mark)
}

// queue appends one packet to the decision, within the plugin's budget.
func (c *Ctx) queue(data []byte, mark uint32) error {
	if len(c.injected) >= maxInjectPerPacket {
		return fmt.Errorf("%w: at most %d packets per packet handled", ErrInjectRate, maxInjectPerPacket)
	}
	e := c.w.eng
	rate, burst := e.injectRates()
	if !e.inject.take(c.cur, e.opts.Clock().UnixNano(), rate, burst) {
		return fmt.Errorf("%w (%g packets/s, burst %g, for plugin %s)", ErrInjectRate, rate, burst, c.cur)
	}
	c.injected = append(c.injected, Injected{Data: data, Mark: mark, Plugin: c.cur})
	c.w.injected = c.injected[:0]
	return nil
}

// ReplyReset queues TCP resets to both ends of the packet's connection (see
// packet.ResetReplies for the sequence numbers).
func (c *Ctx) ReplyReset() error {
	rs, err := packet.ResetReplies(c.Parsed(), c.pkt.Data)
	if err != nil {
		return err
	}
	for _, r := range rs {
		if err := c.queue(r, 0); err != nil {
			return err
		}
	}
	return nil
}

// ReplyICMP queues an ICMP (IPv4) or ICMPv6 error of type and code to the
// packet's sender, from its destination address.
func (c *Ctx) ReplyICMP(typ, code uint8) error {
	r, err := packet.ICMPErrorReply(c.Parsed(), c.pkt.Data, typ, code)
	if err != nil {
		return err
	}
	return c.queue(r, 0)
}

// ReplyUDP queues a UDP datagram with payload back to the packet's sender
// (addresses and ports swapped).
func (c *Ctx) ReplyUDP(payload []byte) error {
	r, err := packet.UDPReply(c.Parsed(), payload)
	if err != nil {
		return err
	}
	return c.queue(r, 0)
}
