local out = {}
local function p(...) local t = {} for i = 1, select('#', ...) do t[#t+1] = tostring((select(i, ...))) end out[#out+1] = table.concat(t, " ") end
-- 1: the issue
do
  local v = "accept"; local function set(x) v = x end
  pcall(function() error("x") end); set("drop"); p(1, v)
end
-- 2: runtime error, not error()
do
  local v = 1; local function inc() v = v + 1 end
  pcall(function() local z = nil; return z.x end); inc(); v = v + 10; inc(); p(2, v)
end
-- 3: nested pcalls
do
  local v = 0; local function set(x) v = x end
  pcall(function()
    local w = 0; local function setw(x) w = x end
    pcall(function() error("inner") end)
    setw(5); w = w + 1; setw(w + 1); set(w)
    error("outer")
  end)
  set(v + 100); v = v + 1; p(3, v)
end
-- 4: xpcall
do
  local v = "a"; local function set(x) v = x end
  xpcall(function() error("x") end, function(m) return m end); set("b"); p(4, v)
  v = "c"; p(4, v, (function() return v end)())
end
-- 5: closures that escaped from the failing function keep their values
do
  local g
  pcall(function() local x = 42; g = function() x = x + 1; return x end; error("e") end)
  local a, b, c = 10, 20, 30
  p(5, g(), g(), a, b, c)
end
do
  local g
  xpcall(function() local x = 7; g = function() x = x + 1; return x end; error("e") end, function(m) return m end)
  local a, b, c, d = 10, 20, 30, 40
  p(6, g(), g(), a, b, c, d)
end
-- 7: error from a Go builtin
do
  local v = 1; local function set(x) v = x end
  pcall(string.rep); set(2); p(7, v)
  pcall(function() string.rep() end); set(3); v = v * 10; p(7, v)
end
-- 8: coroutine: error inside a coroutine, closure escaped
do
  local v = 1; local function set(x) v = x end
  local g
  local co = coroutine.create(function() local y = 5; g = function() y = y + 1 return y end; set(2); error("c") end)
  p(8, coroutine.resume(co) == false)
  set(3); p(8, v, g(), g())
  local co2 = coroutine.wrap(function() local y = 9; g = function() y = y + 1 return y end; error("w") end)
  p(8, pcall(co2) == false, g(), g())
end
-- 9: pcall inside a coroutine, closure over coroutine local
do
  local r = coroutine.wrap(function()
    local v = "x"; local function set(q) v = q end
    pcall(error, "e"); set("y"); coroutine.yield(v)
    pcall(function() error("e2") end); set("z"); return v
  end)
  p(9, r(), r())
end
-- 10: loop local captured then pcall error
do
  local fs = {}
  for i = 1, 3 do
    local j = i
    fs[i] = function(x) j = x end
    pcall(error, "x")
    fs[i](j * 10)
    p(10, i, j)
  end
end
-- 11: error in a deeper Lua frame with its own closure
do
  local v = 0
  local function deep(n) local w = n; local f = function() w = w + 1; v = v + w end; f(); if n == 0 then error("bottom") end; return deep(n - 1) end
  pcall(deep, 3); v = v + 1000; p(11, v)
  local function set(x) v = x end; set(-1); p(11, v)
end
-- 12: tail call then error
do
  local v = 1; local function set(x) v = x end
  local function t2() error("t") end
  local function t1() return t2() end
  pcall(t1); set(5); p(12, v)
end
-- 13: error object non-string
do
  local v = 1; local function set(x) v = x end
  pcall(error, {}); set(6); p(13, v)
  pcall(function() error({code=1}) end); set(7); p(13, v)
end
return table.concat(out, "\n")
