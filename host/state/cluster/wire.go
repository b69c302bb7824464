package cluster

import (
	"strconv"
	"strings"
	"time"

	"github.com/luafw/luafw/host/state"
)

// opKind is what a queued map operation does.
type opKind uint8

const (
	opSet opKind = iota + 1
	opDelete
	opIncr
)

// mapOp is one map write, queued for Redis (applyScript), which
// publishes it to the other nodes if it accepts it.
type mapOp struct {
	Kind  opKind
	Key   string
	Ver   version // the write's order (opIncr: of its last increment)
	Val   string  // encoded value (opSet)
	TTL   int64   // milliseconds; 0: none
	Delta float64 // opIncr
	Init  float64 // opIncr: value of a new key before delta
}

// charge is tokens one node took from one bucket key in one interval.
type charge struct {
	Bucket string  `json:"b"`
	Key    string  `json:"key"`
	N      float64 `json:"n"`
}

// message is what a node publishes once per interval: the tokens it
// took. (Map writes are published by applyScript.)
type message struct {
	Node    string   `json:"node"`
	Charges []charge `json:"charges,omitempty"`
	// Params are the rate and burst of each bucket family charged, so
	// that a node using other ones under the same name notices.
	Params []bucketParams `json:"params,omitempty"`
}

// bucketParams are one bucket family's rate and burst.
type bucketParams struct {
	Bucket string  `json:"b"`
	Rate   float64 `json:"r"`
	Burst  float64 `json:"bu"`
}

// encodeValue writes v as stored in Redis: numbers as plain decimal (so
// INCRBYFLOAT works on them), strings and booleans with a type prefix.
func encodeValue(v state.Value) string {
	switch v.Kind {
	case state.Number:
		return strconv.FormatFloat(v.Num, 'g', -1, 64)
	case state.String:
		return "s:" + v.Str
	case state.Bool:
		if v.Bool {
			return "b:1"
		}
		return "b:0"
	}
	return ""
}

// decodeValue reverses encodeValue; ok is false for anything else (a key
// some other program wrote).
func decodeValue(s string) (state.Value, bool) {
	switch {
	case strings.HasPrefix(s, "s:"):
		return state.StringValue(s[2:]), true
	case s == "b:1":
		return state.BoolValue(true), true
	case s == "b:0":
		return state.BoolValue(false), true
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return state.Value{}, false
	}
	return state.NumberValue(f), true
}

func millis(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return max(1, d.Milliseconds())
}

// mapKeyPrefix is the Redis key prefix of map name's entries. The name's
// length goes first so that no map's keys match another map's prefix.
// ("e:", not the "m:" of the string entries of luafw before versions:
// the two formats do not mix.) The braces are a Redis Cluster hash tag:
// one map's keys and its sequence key share a hash slot, as one script
// call that touches them all needs.
func mapKeyPrefix(prefix, name string) string {
	return prefix + "e:{" + strconv.Itoa(len(name)) + ":" + name + "}:"
}

// mapSeqKey is the key of map name's sequence number: how many writes
// Redis has accepted and published for it.
func mapSeqKey(prefix, name string) string {
	return prefix + "s:{" + strconv.Itoa(len(name)) + ":" + name + "}"
}

// globEscape escapes the characters SCAN MATCH treats as patterns.
func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch r {
		case '*', '?', '[', ']', '\\':
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}
