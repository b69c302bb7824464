local h = harness("mss_clamp.lua", {mss = 1400})

-- syn builds a SYN whose options carry an MSS of mss (kind 2, length 4).
local function syn(src, dst, mss)
  local p = packet.tcp{src = src, dst = dst, dport = 443, flags = "S", payload = ""}
  local opts = string.char(2, 4, math.floor(mss / 256), mss % 256)
  local b = p.data
  local ihl = b:byte(1) >= 0x60 and 40 or 20
  -- Insert the option after the 20-byte TCP header; fix the lengths.
  b = b:sub(1, ihl + 12) .. string.char(0x60) .. b:sub(ihl + 14, ihl + 20) .. opts
  if ihl == 20 then
    b = b:sub(1, 2) .. string.char(0, #b) .. b:sub(5)
  else
    b = b:sub(1, 4) .. string.char(0, #b - 40) .. b:sub(7)
  end
  return b
end

test("SYNs above the MSS are clamped, IPv4 and IPv6", function()
  for _, a in ipairs({{"192.0.2.1", "198.51.100.1"}, {"2001:db8::1", "2001:db8::2"}}) do
    local d = h:run(syn(a[1], a[2], 1460), "forward")
    expect_true(d.rewritten ~= nil, a[1])
    local opts = d.rewritten.data:sub(-4)
    expect_eq(opts:byte(3) * 256 + opts:byte(4), 1400, a[1])
    expect_true(d.rewritten.checksums_ok, a[1])
  end
end)

test("low MSS, non-SYNs and UDP are left alone", function()
  expect_eq(h:run(syn("192.0.2.1", "198.51.100.1", 1200), "forward").rewritten, nil)
  expect_eq(h:run(packet.tcp{flags = "A", payload = "data"}, "forward").rewritten, nil)
  expect_eq(h:run(packet.udp{}, "forward").rewritten, nil)
end)
