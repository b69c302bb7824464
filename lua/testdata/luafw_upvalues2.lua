local out = {}
local function p(...) local t = {} for i = 1, select('#', ...) do t[#t+1] = tostring((select(i, ...))) end out[#out+1] = table.concat(t, " ") end
-- tail call from a function whose local is captured
do
  local fs = {}
  local function mk(n) local x = n; fs[#fs+1] = function() x = x + 1; return x end; return tostring(n) end
  local function tc(n) local y = n * 2; fs[#fs+1] = function() return y end; return mk(n) end
  tc(1); tc(5)
  local a, b, c, d, e = 100, 200, 300, 400, 500
  p("tail", fs[1](), fs[2](), fs[3](), fs[4](), a, e)
end
-- break out of a loop with a captured local
do
  local fs = {}
  for i = 1, 5 do local j = i * 3; fs[i] = function() return j end; if i == 3 then break end end
  local a, b, c = 'a', 'b', 'c'
  p("break", fs[1](), fs[2](), fs[3]())
end
do
  local fs = {}
  local i = 0
  while true do i = i + 1; local k = i; fs[i] = function() k = k + 100; return k end; if i > 2 then break end end
  local q, r, s = 1, 2, 3
  p("while", fs[1](), fs[2](), fs[3](), fs[1]())
end
do
  local fs = {}
  local i = 0
  repeat local k = i; fs[#fs+1] = function() return k end; i = i + 1 until k >= 2
  local q, r, s = 1, 2, 3
  p("repeat", fs[1](), fs[2](), fs[3]())
end
-- generic for closures
do
  local fs = {}
  for k, v in pairs({a=1}) do fs[1] = function() return k, v end end
  for i, v in ipairs({10, 20}) do fs[#fs+1] = function() return i, v end end
  local z1, z2, z3, z4 = 0, 0, 0, 0
  p("for", fs[1]()); p("for", fs[2]()); p("for", fs[3]())
end
-- yield inside a closure-capturing coroutine, locals still shared after yield
do
  local co = coroutine.wrap(function()
    local v = 1
    local function set(x) v = x end
    coroutine.yield(function() return v end)
    set(2); coroutine.yield(v)
    v = 3; return v
  end)
  local get = co()
  p("co", co(), get(), co(), get())
end
-- error inside a coroutine inside pcall inside a coroutine
do
  local co = coroutine.wrap(function()
    local v = "a"; local function set(x) v = x end
    local inner = coroutine.create(function() local w = 1; error("in") end)
    coroutine.resume(inner)
    set("b")
    local ok = pcall(function() local c2 = coroutine.wrap(function() error("w") end); c2() end)
    set(v .. "c"); return v, ok
  end)
  p("nested", co())
end
-- pcall returning normally with closures
do
  local g
  local ok = pcall(function() local x = 5; g = function() return x end end)
  local a, b, c = 1, 2, 3
  p("ok", ok, g())
end
return table.concat(out, "\n")
