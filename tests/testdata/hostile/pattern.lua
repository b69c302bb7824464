-- An honest plugin that drops packets whose payload matches a Lua pattern
-- (options: pattern, and fn: find, match, gmatch or gsub). Crafted
-- payloads make the pattern backtrack for a very long time: the budget
-- must cut the call off inside the pattern matcher. Port 23 is dropped
-- and other packets are marked 0x42, so ordinary decisions are visible.
local pat, fn = fw.options.pattern, fw.options.fn

local function matches(p)
  if fn == "find" then return p:find(pat) ~= nil end
  if fn == "match" then return p:match(pat) ~= nil end
  if fn == "gmatch" then
    for _ in p:gmatch(pat) do return true end
    return false
  end
  if fn == "gsub" then
    local _, n = p:gsub(pat, "")
    return n > 0
  end
  error("unknown fn " .. tostring(fn))
end

fw.register{hook = "forward", fn = function(pkt)
  if pkt.dport == 23 then return fw.DROP end
  if matches(pkt.payload) then return fw.DROP end
  pkt:set_mark(0x42)
end}
