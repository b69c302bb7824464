package state

import (
	"hash/fnv"
	"strconv"
	"testing"
)

// TestShardHash: ShardHash is 32-bit FNV-1a (hash/fnv agrees), spreads
// keys over the shards, and does not allocate.
func TestShardHash(t *testing.T) {
	for _, tc := range []struct {
		key  string
		want uint32
	}{
		{"", 0x811c9dc5}, // the offset basis
		{"a", 0xe40c292c},
		{"foobar", 0xbf9cf968},
	} {
		if got := ShardHash(tc.key); got != tc.want {
			t.Errorf("ShardHash(%q) = %#x, want %#x", tc.key, got, tc.want)
		}
	}
	for _, key := range []string{"10.1.2.3", "2001:db8::1", "\xff\x00 bytes"} {
		h := fnv.New32a()
		h.Write([]byte(key))
		if got, want := ShardHash(key), h.Sum32(); got != want {
			t.Errorf("ShardHash(%q) = %#x, hash/fnv says %#x", key, got, want)
		}
	}
	var count [numShards]int
	for i := range 32 * numShards {
		count[shardOf("10.0."+strconv.Itoa(i>>8)+"."+strconv.Itoa(i&255))]++
	}
	for i, n := range count {
		if n < 16 || n > 48 { // 32 expected per shard
			t.Errorf("shard %d got %d of %d keys", i, n, 32*numShards)
		}
	}
	var sink uint32
	if a := testing.AllocsPerRun(100, func() { sink += ShardHash("198.51.100.7") }); a != 0 {
		t.Errorf("ShardHash allocates %v times", a)
	}
	_ = sink
}
