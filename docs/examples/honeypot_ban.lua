-- honeypot_ban: a source that touches a honeypot port is banned for
-- `ban` seconds; a timer lifts the bans on time and logs a summary.
--
-- Packet callbacks and timers run in different Lua states (timers once per
-- plugin, callbacks in every worker), so they share data through state.map:
-- the callback appends each new ban to a FIFO (all bans last equally long,
-- so the oldest ban is the first to lift) and the timer pops it.

local ports = fw.option("ports", {23, 2323}, "table")
local ban_for = fw.option("ban", 600, "number")

local bans = state.map("honeypot.bans")   -- source -> time banned
local fifo = state.map("honeypot.fifo")   -- position -> source
local pos = state.map("honeypot.pos")     -- "head", "tail"
local lifted = state.counter("honeypot.lifted")

local honeypot = {}
for _, p in ipairs(ports) do honeypot[p] = true end

fw.register{name = "honeypot", hook = "input", fn = function(pkt)
  if bans:get(pkt.src) then return fw.DROP end
  if (pkt.proto == "tcp" or pkt.proto == "udp") and honeypot[pkt.dport] then
    bans:set(pkt.src, time.now())
    fifo:set(tostring(pos:incr("tail")), pkt.src)
    log.warn("honeypot: source banned", {src = pkt.src, port = pkt.dport, seconds = ban_for})
    return fw.DROP
  end
end}

-- Every second, lift the bans that are due.
fw.every(1, function()
  local now = time.now()
  local head, tail = pos:get("head") or 0, pos:get("tail") or 0
  while head < tail do
    local src = fifo:get(tostring(head + 1))
    local since = src and bans:get(src)
    if since and since + ban_for > now then break end -- not yet due
    if src then bans:delete(src) end
    fifo:delete(tostring(head + 1))
    head = head + 1
    lifted:incr()
  end
  pos:set("head", head)
end)

-- A summary line every minute.
fw.every(60, function()
  local open = (pos:get("tail") or 0) - (pos:get("head") or 0)
  if open > 0 then log.info("honeypot: bans in force", {bans = open, lifted = lifted:get()}) end
end)
