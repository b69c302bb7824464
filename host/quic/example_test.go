package quic_test

import (
	"fmt"

	"github.com/luafw/luafw/host/quic"
)

// A client Initial is opened with keys from its own destination connection
// ID; its CRYPTO frames come out by offset, in any order.
func Example() {
	frames := append(quic.CryptoFrame(6, []byte("world")), quic.CryptoFrame(0, []byte("hello "))...)
	initial, err := quic.Seal(quic.V2, []byte{1, 2, 3, 4, 5, 6, 7, 8}, nil, 0, frames, 1200)
	if err != nil {
		panic(err)
	}
	plain, hdr, _, err := quic.Open(initial, nil)
	if err != nil {
		panic(err)
	}
	hello := make([]byte, 11)
	quic.Frames(plain, func(off uint64, data []byte) { copy(hello[off:], data) })
	fmt.Printf("version %#x, %d-byte datagram: %q\n", hdr.Version, len(initial), hello)
	// Output: version 0x6b3343cf, 1200-byte datagram: "hello world"
}
