package stream_test

import (
	"fmt"
	"net/netip"

	"github.com/luafw/luafw/host/stream"
)

// A client sends its first bytes backwards, with a fake before the real
// second half: the table holds both readings of the stream.
func Example() {
	t := stream.NewTable(stream.Limits{}, nil)
	k := stream.Key{Src: netip.MustParseAddr("192.0.2.1"), Dst: netip.MustParseAddr("198.51.100.1"), SPort: 40000, DPort: 443}
	t.Add(k, stream.Segment{Seq: 99, Flags: stream.FlagSYN}, 0)
	t.Add(k, stream.Segment{Seq: 106, Payload: []byte("decoy")}, 0) // a fake that never reaches the server
	t.Add(k, stream.Segment{Seq: 106, Payload: []byte("world")}, 0)
	f := t.Add(k, stream.Segment{Seq: 100, Payload: []byte("hello ")}, 0)
	for i := 0; i < f.Variants(); i++ {
		fmt.Printf("%q\n", t.Reading(f, i))
	}
	st := t.Stats()
	fmt.Println("segments", st.Segments, "conflicts", st.Conflicts)
	// Output:
	// "hello decoy"
	// "hello world"
	// segments 3 conflicts 1
}
