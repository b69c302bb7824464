package sandbox

import (
	"os/exec"
	"strings"
	"testing"

	lua "github.com/luafw/luafw/lua"
)

// lua51Script exercises the builtins this package rewrote for bounds
// (table.sort/concat/insert/remove/getn/maxn, unpack, string.sub, upper,
// lower, reverse, captures) on ordinary inputs; TestBuiltinsAgreeWithLua51
// runs it in C Lua 5.1 and in the sandbox and compares every line.
const lua51Script = `
local function show(...)
  local out = {select("#", ...)}
  for i = 1, select("#", ...) do
    local v = select(i, ...)
    if type(v) == "table" then
      local parts = {}
      for j = 1, table.getn(v) do parts[j] = tostring(v[j]) end
      v = "{" .. table.concat(parts, ",") .. "}"
    end
    out[#out + 1] = tostring(v)
  end
  print(table.concat(out, " "))
end
local function try(f, ...) local ok, a, b, c = pcall(f, ...) if ok then show(a, b, c) else show("error") end end

-- table.sort
local t = {5, 3, 8, 1, 9, 2, 7, 4, 6, 0} table.sort(t) show(t)
t = {"b", "a", "d", "c", "aa", ""} table.sort(t) show(t)
t = {5, 3, 8, 1} table.sort(t, function(a, b) return a > b end) show(t)
t = {} table.sort(t) show(t)
t = {1} table.sort(t) show(t)
t = {3, 1, 2} t[2^20] = 0 table.sort(t) show(t, t[2^20])
try(function() local t = {3, "x", 1} table.sort(t) end)
try(function() local t = {3, 1} t[4] = 2 table.sort(t) return t[1], t[2], t[4] end)
-- a list longer than the array bound (its border lies in the hash part)
t = {} for i = 1, 70000 do t[i] = (i * 7919) % 70001 end
table.sort(t)
local sorted = true for i = 2, 70000 do if t[i - 1] > t[i] then sorted = false end end
show(sorted, t[1], t[35000], t[70000], #t >= 65535, table.getn(t))
table.sort(t, function(a, b) return a > b end)
show(t[1], t[70000], table.getn(t))
t[70001] = 1 t[140000] = 2 show(table.getn(t))

-- concat, insert, remove, unpack, getn, maxn
show(table.concat({1, 2, 3}, ", "), table.concat({}, "x"), table.concat({"a", "b", "c"}, "", 2, 3))
show(table.concat({1, 2, 3}, "-", 3, 2))
try(table.concat, {1, {}, 3})
t = {1, 2, 3} table.insert(t, 4) table.insert(t, 1, 0) table.insert(t, 3, 9) show(t)
t = {1, 2, 3} table.insert(t, 6, 9) show(t[6], table.getn(t) >= 3)
t = {1, 2, 3} show(table.remove(t), t) show(table.remove(t, 1), t) show(table.remove({}), table.remove({}, 1))
t = {1, 2, 3} show(table.remove(t, 5), t)
show(unpack({1, 2, 3})) show(unpack({1, 2, 3}, 2)) show(unpack({1, 2, 3}, 2, 5)) show(unpack({}, 1, 0))
show(table.getn({1, 2, nil, 4}) >= 2, table.maxn({1, 2, [10] = 3}), table.maxn({}))

-- sub, upper, lower, reverse
local s = "hello, world"
for _, ij in ipairs({{1, 5}, {-5, -1}, {0, 3}, {3}, {-100, 2}, {5, 100}, {8, 3}, {13, 13}, {-1}, {0}, {2, -2}, {100}}) do
  show(s:sub(ij[1], ij[2]))
end
show(("x"):sub(1, 0), (""):sub(1), s:sub("2", "4"))
show(("AbC\1dé\200xYz"):upper(), ("AbC\1dÉ\200xYz"):lower(), ("ab\1c\200"):reverse(), #("a\0b"):upper(), (""):upper(), (""):reverse())
show(("1 Mixed CASE 2"):upper(), ("1 Mixed CASE 2"):lower())

-- captures
show(s:match("(h)(e)(l+)"), s:find("(o),"), s:match("()ll()"))
local words = {} for w in s:gmatch("%a+") do words[#words + 1] = w end show(words)
show(s:gsub("(%w+)", "<%1>"), s:gsub("%w+", function(w) return w:upper() end))
show(s:gsub("(o)", {o = "0"}))
`

func TestBuiltinsAgreeWithLua51(t *testing.T) {
	c51, err := exec.LookPath("lua5.1")
	if err != nil {
		t.Skip("lua5.1 not installed (apt-get install lua5.1)")
	}
	cmd := exec.Command(c51, "-")
	cmd.Stdin = strings.NewReader(lua51Script)
	want, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("lua5.1: %v\n%s", err, want)
	}
	L := NewState()
	defer L.Close()
	var got strings.Builder
	L.SetGlobal("print", L.NewFunction(func(L *lua.LState) int {
		for i := 1; i <= L.GetTop(); i++ {
			if i > 1 {
				got.WriteByte('\t')
			}
			got.WriteString(L.ToStringMeta(L.Get(i)).String())
		}
		got.WriteByte('\n')
		return 0
	}))
	if err := L.DoString(lua51Script); err != nil {
		t.Fatal(err)
	}
	wl, gl := strings.Split(string(want), "\n"), strings.Split(got.String(), "\n")
	if len(wl) != len(gl) {
		t.Fatalf("lua5.1 printed %d lines, the sandbox %d:\n%s\n---\n%s", len(wl), len(gl), want, got.String())
	}
	for i := range wl {
		if wl[i] != gl[i] {
			t.Errorf("line %d:\n  lua5.1:  %q\n  sandbox: %q", i+1, wl[i], gl[i])
		}
	}
}
