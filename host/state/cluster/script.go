package cluster

import (
	"errors"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// applyScript applies a batch of writes to one map inside Redis, each only
// if it orders after what the entry holds, and publishes the writes it
// accepted, as Redis now holds them, with the map's sequence numbers.
// Running in the server makes the compare and the write one atomic step,
// and makes Redis the one place that decides the order in which every
// node hears of them: pub/sub delivers one connection's messages in order.
//
// An entry is a hash: v (the encoded value; absent in a tombstone), h and
// n (its version), d (1 in a tombstone). A delete leaves a tombstone for
// the tombstone TTL, so that an older write arriving late finds a newer
// version and is refused. An increment always applies (increments add)
// and gets a version Redis makes: one past both the entry's and the
// write's clock, node 0; no node can write that version itself.
//
// KEYS[1] is the map's sequence key, KEYS[1+i] write i's entry key.
// ARGV[1] channel, ARGV[2] map name, ARGV[3] tombstone TTL in ms, then 8
// per write: kind (s, d, i), key, clock, node, value, TTL in ms (0:
// none), delta, init. Returns the map's sequence number after the batch.
//
// The message is "M" and then netstrings: map name, first and last
// sequence number, then 6 per accepted write: kind (s or d), key, value,
// clock, node, TTL in ms (-1: none).
var applyScript = redis.NewScript(`
local function ns(s) return #s .. ':' .. s end
local tomb = ARGV[3]
local out, n = {}, 0
for i = 2, #KEYS do
  local b = 4 + (i - 2) * 8
  local k, kind = KEYS[i], ARGV[b]
  local hs, ns_ = ARGV[b + 2], ARGV[b + 3]
  local h, nd = tonumber(hs), tonumber(ns_)
  local cur = redis.pcall('HMGET', k, 'h', 'n', 'v', 'd')
  if type(cur) ~= 'table' or cur.err then
    redis.call('DEL', k)
    cur = {}
  end
  local ch, cn = tonumber(cur[1]), tonumber(cur[2])
  local live = ch ~= nil and cur[3] and not cur[4]
  local newer = ch == nil or h > ch or (h == ch and nd > cn)
  local kout, vout, ttl
  if kind == 'i' then
    local base
    if live then base = tonumber(cur[3]) else base = tonumber(ARGV[b + 7]) end
    if base ~= nil then
      local v = string.format('%.17g', base + tonumber(ARGV[b + 6]))
      hs = string.format('%.0f', math.max(ch or 0, h) + 1)
      ns_ = '0'
      if not live then redis.call('DEL', k) end
      redis.call('HSET', k, 'v', v, 'h', hs, 'n', ns_)
      if not live then
        if tonumber(ARGV[b + 5]) > 0 then redis.call('PEXPIRE', k, ARGV[b + 5]) end
      end
      kout, vout, ttl = 's', v, redis.call('PTTL', k)
    end
  elseif newer then
    redis.call('DEL', k)
    if kind == 's' then
      redis.call('HSET', k, 'v', ARGV[b + 4], 'h', hs, 'n', ns_)
      ttl = -1
      if tonumber(ARGV[b + 5]) > 0 then
        redis.call('PEXPIRE', k, ARGV[b + 5])
        ttl = ARGV[b + 5]
      end
      kout, vout = 's', ARGV[b + 4]
    else
      redis.call('HSET', k, 'h', hs, 'n', ns_, 'd', '1')
      redis.call('PEXPIRE', k, tomb)
      kout, vout, ttl = 'd', '', tomb
    end
  end
  if kout then
    n = n + 1
    out[#out + 1] = ns(kout) .. ns(ARGV[b + 1]) .. ns(vout) .. ns(hs) .. ns(ns_) .. ns(tostring(ttl))
  end
end
if n == 0 then
  return tonumber(redis.call('GET', KEYS[1]) or '0')
end
local last = redis.call('INCRBY', KEYS[1], n)
redis.call('PUBLISH', ARGV[1], 'M' .. ns(ARGV[2]) .. ns(tostring(last - n + 1)) .. ns(tostring(last)) .. table.concat(out))
return last
`)

// entryMsg is one accepted write as Redis published it, or one entry as
// a load read it.
type entryMsg struct {
	del bool
	key string
	val string
	ver version
	ttl int64 // ms; <= 0: none
}

// mapMsg is one message of applyScript.
type mapMsg struct {
	name        string
	first, last uint64
	entries     []entryMsg
}

var errBadMsg = errors.New("cluster: malformed map message")

// parseMapMsg decodes a message of applyScript (without its "M").
func parseMapMsg(p string) (mapMsg, error) {
	next := func() (string, bool) {
		i := strings.IndexByte(p, ':')
		if i <= 0 || i > 10 {
			return "", false
		}
		n, err := strconv.Atoi(p[:i])
		if err != nil || n < 0 || n > len(p)-i-1 {
			return "", false
		}
		s := p[i+1 : i+1+n]
		p = p[i+1+n:]
		return s, true
	}
	var m mapMsg
	name, ok1 := next()
	first, ok2 := next()
	last, ok3 := next()
	if !ok1 || !ok2 || !ok3 {
		return m, errBadMsg
	}
	m.name = name
	var err1, err2 error
	m.first, err1 = strconv.ParseUint(first, 10, 64)
	m.last, err2 = strconv.ParseUint(last, 10, 64)
	if err1 != nil || err2 != nil || m.first > m.last {
		return m, errBadMsg
	}
	for p != "" {
		var f [6]string
		for i := range f {
			s, ok := next()
			if !ok {
				return m, errBadMsg
			}
			f[i] = s
		}
		h, err1 := strconv.ParseInt(f[3], 10, 64)
		n, err2 := strconv.ParseInt(f[4], 10, 64)
		ttl, err3 := strconv.ParseInt(f[5], 10, 64)
		if err1 != nil || err2 != nil || err3 != nil || (f[0] != "s" && f[0] != "d") {
			return m, errBadMsg
		}
		m.entries = append(m.entries, entryMsg{del: f[0] == "d", key: f[1], val: f[2], ver: version{h, n}, ttl: ttl})
	}
	return m, nil
}
