package engine

import (
	"slices"

	lua "github.com/luafw/luafw/lua"

	"github.com/luafw/luafw/host/packet"
)

// maxTags bounds the tags one packet can carry.
const maxTags = 16

// Ctx is one packet on its way down a chain: what a callback reads and the
// actions it takes. The worker reuses it for the next packet, so a callback
// must not keep it.
type Ctx struct {
	w   *Worker
	pkt *Packet
	cur string // plugin of the running callback

	parsed  packet.Parsed
	decoded bool

	mark    uint32
	markSet bool

	ctMark      uint32
	ctMarkKnown bool
	ctLooked    bool
	ctUpd       CTUpdate

	seq uint64 // counts packets: what a value cached for "this packet" compares (flowtable.go)

	cg       string // the packet's cgroup, once looked up (cgroup.go)
	cgOK     bool
	cgLooked bool

	tags []string

	captureBy string     // plugin that called pkt:capture()
	own       Packet     // the packet once rewritten: pkt points here (rewrite.go)
	injected  []Injected // packets to send (inject.go)

	// cached Lua values of this packet, built on first read
	src, dst, indev, outdev lua.LValue
	addrs                   addrCache // address texts, kept across packets
}

func (c *Ctx) reset(p *Packet) {
	c.pkt = p
	c.decoded = false
	c.mark, c.markSet = p.Mark, false
	c.ctMark, c.ctMarkKnown, c.ctLooked = p.CTMark, p.CTMarkKnown, p.CTMarkKnown
	c.ctUpd = CTUpdate{}
	c.cgLooked = false
	c.seq++
	c.tags = append(c.w.tags[:0], p.Tags...)
	c.captureBy = ""
	c.injected = c.w.injected[:0]
	c.src, c.dst, c.indev, c.outdev = nil, nil, nil, nil
}

// Packet returns the packet with the rewrites of the callbacks so far
// (the handed-in Packet itself is never written).
func (c *Ctx) Packet() *Packet { return c.pkt }

// Parsed returns the decoded headers (decoded on first use).
func (c *Ctx) Parsed() *packet.Parsed {
	if !c.decoded {
		c.parsed.Decode(c.pkt.Data)
		c.decoded = true
	}
	return &c.parsed
}

// Mark returns the packet mark as the earlier callbacks left it.
func (c *Ctx) Mark() uint32 { return c.mark }

// SetMark sets the bits of mask in the packet mark to those of value.
func (c *Ctx) SetMark(value, mask uint32) {
	c.mark = c.mark&^mask | value&mask
	c.markSet = true
}

// Tag puts a pf-style tag on the packet; later callbacks (and later hooks,
// where the path carries tags) see it with Tagged.
func (c *Ctx) Tag(name string) bool {
	if slices.Contains(c.tags, name) {
		return true
	}
	if len(c.tags) >= maxTags {
		return false
	}
	c.tags = append(c.tags, name)
	c.w.tags = c.tags[:0]
	return true
}

// Untag removes a tag.
func (c *Ctx) Untag(name string) {
	if i := slices.Index(c.tags, name); i >= 0 {
		c.tags = slices.Delete(c.tags, i, i+1)
	}
}

// Tagged reports whether the packet carries the tag.
func (c *Ctx) Tagged(name string) bool { return slices.Contains(c.tags, name) }

// Tags returns the packet's tags; the slice is the worker's.
func (c *Ctx) Tags() []string { return c.tags }

// CTState returns the connection's conntrack state.
func (c *Ctx) CTState() CTState { return c.pkt.CTState }

// CTMark returns the connection's mark, looking it up through the worker's
// CTSource the first time when the packet did not carry it. ok is false
// when it is not known.
func (c *Ctx) CTMark() (mark uint32, ok bool) {
	if !c.ctLooked {
		c.ctLooked = true
		if c.w.ct != nil {
			c.ctMark, c.ctMarkKnown = c.w.ct.CTMark(c)
		}
	}
	mark = c.ctMark
	if c.ctUpd.SetMark {
		mark = mark&^c.ctUpd.MarkMask | c.ctUpd.Mark
	}
	return mark, c.ctMarkKnown || c.ctUpd.SetMark
}

// CTSetMark sets the bits of mask in the connection's mark to value's.
func (c *Ctx) CTSetMark(value, mask uint32) {
	u := &c.ctUpd
	if !u.SetMark {
		u.SetMark = true
		u.Mark, u.MarkMask = 0, 0
	}
	u.Mark = u.Mark&^mask | value&mask
	u.MarkMask |= mask
}

// CTSetTimeout sets the connection's timeout in seconds.
func (c *Ctx) CTSetTimeout(seconds uint32) {
	c.ctUpd.SetTimeout = true
	c.ctUpd.Timeout = seconds
}

// CTSetLabel sets conntrack label bit (0..127).
func (c *Ctx) CTSetLabel(bit uint) bool {
	if bit > 127 {
		return false
	}
	c.ctUpd.SetLabels = true
	c.ctUpd.Labels[bit/64] |= 1 << (bit % 64)
	return true
}

// Capture asks for the packet to be written to the capture file (when the
// daemon has one), whatever its verdict.
func (c *Ctx) Capture() {
	if c.captureBy == "" {
		c.captureBy = c.cur
	}
}

// Plugin returns the name of the plugin whose callback is running.
func (c *Ctx) Plugin() string { return c.cur }
