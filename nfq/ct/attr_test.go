package ct

import (
	"encoding/binary"
	"testing"

	"github.com/luafw/luafw/netfilter"
)

func nla(typ uint16, data []byte) []byte {
	b := make([]byte, 4, 4+len(data)+3)
	binary.NativeEndian.PutUint16(b[0:2], uint16(4+len(data)))
	binary.NativeEndian.PutUint16(b[2:4], typ)
	b = append(b, data...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func TestCTMarkOf(t *testing.T) {
	status := nla(3, []byte{0, 0, 0, 8})
	tuple := nla(1|0x8000, nla(2, []byte{1, 2, 3}))
	mark := nla(8, []byte{0, 0, 0x12, 0x34})
	if m, ok := MarkOf(append(append(tuple, status...), mark...)); !ok || m != 0x1234 {
		t.Fatalf("mark %#x ok=%v", m, ok)
	}
	if _, ok := MarkOf(append(tuple, status...)); ok {
		t.Fatal("found a mark in a nest without one")
	}
	for _, bad := range [][]byte{nil, {1}, {2, 0, 8, 0}, {200, 0, 8, 0, 1, 2, 3, 4}} {
		if _, ok := MarkOf(bad); ok {
			t.Fatalf("malformed nest %v read as a mark", bad)
		}
	}
}

func TestCTStateOf(t *testing.T) {
	for info, want := range map[uint32]netfilter.CTState{InfoNew: netfilter.CTNew, InfoEstablished: netfilter.CTEstablished, InfoEstablishedReply: netfilter.CTEstablished,
		InfoRelated: netfilter.CTRelated, InfoRelatedReply: netfilter.CTRelated, InfoUntracked: netfilter.CTUntracked, 99: netfilter.CTInvalid} {
		if got := StateOf(info); got != want {
			t.Errorf("info %d: state %d, want %d", info, got, want)
		}
	}
}
