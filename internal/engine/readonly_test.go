package engine

import (
	"strings"
	"testing"
)

// fw is read-only all the way down: fw.priority and fw.hooks refuse every
// way of writing, and still read like the tables they are.
func TestFwNestedTablesReadOnly(t *testing.T) {
	writes := map[string]string{
		"priority field":   `fw.priority.raw = 5`,
		"priority new key": `fw.priority.mine = 5`,
		"hooks index":      `fw.hooks[1] = "x"`,
		"hooks append":     `fw.hooks[#fw.hooks + 1] = "x"`,
		"rawset":           `rawset(fw.hooks, 1, "x")`,
		"table.insert":     `table.insert(fw.hooks, "x")`,
		"table.insert at":  `table.insert(fw.hooks, 1, "x")`,
		"table.remove":     `table.remove(fw.hooks)`,
		"table.sort":       `table.sort(fw.hooks)`,
		"setmetatable":     `setmetatable(fw.priority, nil)`,
		"pairs state":      `local _, s = pairs(fw.hooks); s[1] = "x"`,
		"ipairs state":     `local _, s = ipairs(fw.hooks); rawset(s, 1, "x")`,
		"string library":   `table.insert(string, print)`,
	}
	for name, code := range writes {
		t.Run(name, func(t *testing.T) {
			e, _ := newTestEngine(t)
			// The write must fail, and must not have changed anything
			// either: pcall it and look.
			mustLoad(t, e, src("w", `local ok = pcall(function() `+code+` end)
				assert(not ok, "the write was allowed")
				assert(fw.priority.raw == -300 and not pcall(function() return fw.priority[("mi" .. "ne")] end), "fw.priority changed")
				assert(#fw.hooks == 5 and fw.hooks[1] == "prerouting" and rawget(fw.hooks, 1) == nil, "fw.hooks changed")
				fw.register{hook = "input", fn = function() end}`))
			err := e.Load([]PluginSpec{src("w", code)})
			if err == nil || !strings.Contains(err.Error(), "read-only") && !strings.Contains(err.Error(), "protected metatable") {
				t.Fatalf("error %v, want a read-only refusal", err)
			}
		})
	}
}

func TestReadOnlyTablesIterate(t *testing.T) {
	e, _ := newTestEngine(t)
	mustLoad(t, e, src("iter", `
		local n = 0
		for k, v in pairs(fw.priority) do n = n + 1; assert(fw.priority[k] == v) end
		assert(n == 7, "pairs(fw.priority): " .. n)
		local hooks = {}
		for i, h in ipairs(fw.hooks) do hooks[i] = h end
		assert(#hooks == 5 and #fw.hooks == 5 and table.getn(fw.hooks) == 5 and table.maxn(fw.hooks) == 5)
		assert(table.concat(fw.hooks, ",") == table.concat(hooks, ","))
		assert(select("#", unpack(fw.hooks)) == 5 and select(2, unpack(fw.hooks)) == hooks[2])
		local k, v = next(fw.hooks)
		assert(k == 1 and v == hooks[1])
		local f, s, i = pairs(fw.hooks)
		assert(f == next and s == fw.hooks and i == nil)
		-- The libraries iterate too.
		local found = false
		for name, fn in pairs(string) do if name == "upper" and fn == string.upper then found = true end end
		assert(found, "pairs(string)")
		-- Ordinary tables are untouched.
		local t = {3, 1, 2, x = 1}
		table.insert(t, 4); table.sort(t); assert(table.remove(t, 1) == 1)
		assert(#t == 3 and table.concat(t, "") == "234" and select("#", unpack(t)) == 3)
		local c = 0; for _ in pairs(t) do c = c + 1 end; assert(c == 4)
		-- fw.options stays an ordinary table.
		fw.options.x = 1; assert(fw.options.x == 1 and fw.option("x") == 1)
		fw.register{hook = fw.hooks, fn = function(pkt) end}`))
	if got := len(e.Chains()); got != 5 {
		t.Fatalf("hook = fw.hooks registered on %d hooks, want 5", got)
	}
}
