package daemon

import (
	"math/bits"
	"slices"

	"github.com/luafw/luafw/config"
)

// tagMarks carries tags across diversions in mark bits (marks.tags): the
// engine names the tags that must cross (engine.CrossingTags: tested by a
// literal name, and possibly set), and each gets one bit of the
// mask, lowest first, in that order; tags beyond the mask's bits do not
// cross (luafw check and the log say which). A reader decodes the bits of
// a queued packet into its tags and encodes the decision's tags back into
// the verdict's mark. The bits in use are luafw's: scripts neither see
// nor set them (the rest of marks.tags stays the scripts'). A reload maps
// again; a packet between two diversions during a reload may lose or gain
// a crossing tag once.
type tagMarks struct {
	mask  uint32   // the bits in use
	names []string // the crossing tags, by bit
	bits  []uint32
}

// newTagMarks maps tags onto the bits of mask; it returns the tags left
// without a bit.
func newTagMarks(mask uint32, tags []string) (*tagMarks, []string) {
	t := &tagMarks{}
	free := mask
	for i, name := range tags {
		if free == 0 {
			return t, tags[i:]
		}
		bit := uint32(1) << bits.TrailingZeros32(free)
		free &^= bit
		t.mask |= bit
		t.names, t.bits = append(t.names, name), append(t.bits, bit)
	}
	return t, nil
}

// decode appends to buf the tags whose bits mark has.
func (t *tagMarks) decode(mark uint32, buf []string) []string {
	if mark&t.mask == 0 {
		return buf
	}
	for i, b := range t.bits {
		if mark&b != 0 {
			buf = append(buf, t.names[i])
		}
	}
	return buf
}

// encode returns the bits of the crossing tags among tags.
func (t *tagMarks) encode(tags []string) uint32 {
	var m uint32
	for _, tag := range tags {
		if i := slices.Index(t.names, tag); i >= 0 {
			m |= t.bits[i]
		}
	}
	return m
}

// Describe says which tags cross and on which bits, for luafw check.
func (t *tagMarks) describe() []string {
	out := make([]string, len(t.names))
	for i, n := range t.names {
		out[i] = n + "=" + hexMark(t.bits[i])
	}
	return out
}

func hexMark(b uint32) string {
	const digits = "0123456789abcdef"
	s := []byte("0x00000000")
	for i := 9; i >= 2; i-- {
		s[i] = digits[b&0xf]
		b >>= 4
	}
	return string(s)
}

// setTags maps the running set's crossing tags onto cfg's marks.tags,
// logging the tags left without a bit.
func (d *Daemon) setTags(cfg *config.File) {
	t, left := newTagMarks(cfg.TagMarks(), d.eng.CrossingTags())
	if len(left) > 0 {
		d.log.Warn("more tags cross diversions than marks.tags has bits: these stay within their diversion",
			"tags", left, "marks_tags", hexMark(cfg.TagMarks()))
	}
	if len(t.names) == 0 {
		t = nil
	}
	d.tags.Store(t)
}

// TagMarks says which tags of the loaded set cross diversions on the
// kernel path (on which mark bits), and which crossing tags got no bit.
func TagMarks(mask uint32, crossing []string) (carried, left []string) {
	t, left := newTagMarks(mask, crossing)
	return t.describe(), left
}
