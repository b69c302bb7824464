-- ssh_guard limits new SSH connections per source address. A source that
-- opens more than `burst` connections faster than `rate` per second is
-- banned for `ban` seconds. Sources in `allow` are never limited.
--
-- options: rate (connections/s, default 0.5), burst (default 5),
--          ban (seconds, default 600), port (default 22),
--          allow (list of addresses or CIDRs, default none)
local opts = fw.options
local rate = opts.rate or 0.5
local burst = opts.burst or 5
local ban_for = opts.ban or 600
local port = opts.port or 22
local allow = net.set(opts.allow or {})

-- Shared by every worker (and kept across reloads): names are global to
-- the engine, so prefix them with the plugin's name.
local attempts = state.bucket(fw.plugin .. ".attempts", {rate = rate, burst = burst})
local banned = state.map(fw.plugin .. ".banned")
local bans = state.counter(fw.plugin .. ".bans")

fw.register{name = "ssh-guard", hook = "input", fn = function(pkt)
  if pkt.proto ~= "tcp" or pkt.dport ~= port or not pkt.tcp.syn or pkt.tcp.ack then
    return fw.ACCEPT -- only connection attempts count
  end
  local src = pkt.src
  if allow:contains(src) then
    return fw.ACCEPT
  end
  if banned:get(src) then
    pkt:tag("ssh-banned")
    return fw.DROP
  end
  if not attempts:take(src) then
    banned:set(src, true, ban_for)
    bans:incr()
    log.warn("ssh source banned", {src = src, seconds = ban_for, total = bans:get()})
    pkt:tag("ssh-banned")
    return fw.DROP
  end
end}
