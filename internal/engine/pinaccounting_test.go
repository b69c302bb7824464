package engine

import (
	"runtime"
	"runtime/metrics"
	"testing"
)

// liveHeap is the Go heap's live objects after a collection.
func liveHeap() int64 {
	runtime.GC()
	runtime.GC()
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return int64(s[0].Value.Uint64())
}

// TestKeptPiecesCountWhatTheyPin: a plugin keeps small pieces of large
// strings (a 1-byte sub of a 1 MiB string, a capture, a gmatch iterator):
// the memory walk's estimate must cover what the kept values hold alive in
// the Go heap. Before the fix the 1-byte subs kept 32 MiB counted as 32
// bytes.
func TestKeptPiecesCountWhatTheyPin(t *testing.T) {
	const n = 32
	cases := map[string]string{
		"sub":        `keep[i] = string.rep("x", 1048576 - i):sub(1, 1)`,
		"sub-middle": `keep[i] = string.rep("x", 1048576 - i):sub(500000, 500010)`,
		"match":      `keep[i] = string.rep("x", 1048576 - i):match("^(x)")`,
		"find":       `keep[i] = select(3, string.rep("x", 1048576 - i):find("(xx)"))`,
		"gsub-fn":    `string.rep("x", 1048576 - i):gsub("^x", function(c) keep[i] = c end)`,
		"gsub-table": `string.rep("x", 1048576 - i):gsub("^x", setmetatable({}, {__index = function(_, c) keep[i] = c end}))`,
		"gmatch":     `keep[i] = string.rep("x", 1048576 - i):gmatch("x")`,
	}
	for name, body := range cases {
		t.Run(name, func(t *testing.T) {
			e, _ := newTestEngine(t)
			code := "keep = {}\nfor i = 1, " + itoa(n) + " do\n" + body + "\nend\nfw.register{hook='input', fn=function() end}"
			before := liveHeap()
			mustLoad(t, e, src("pin", code))
			p := e.gen.Load().plugins[0]
			ps, err := e.newPluginState(p, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer ps.L.Close()
			held := liveHeap() - before
			var m memWalker
			est := m.measure(ps, 1<<62)
			// ps (and a state the load may keep) hold the kept values.
			t.Logf("%s: live heap +%d KiB, estimate %d KiB per state", name, held>>10, est>>10)
			if held > 2*2*est+(4<<20) {
				t.Errorf("%s: the plugin holds %d KiB of heap, the walk counts %d KiB per state", name, held>>10, est>>10)
			}
		})
	}
}
