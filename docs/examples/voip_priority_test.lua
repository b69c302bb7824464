local h = harness("voip_priority.lua", {bulk_rate = 1})

test("the tag set at prerouting is seen at forward", function()
  local sip = packet.udp{dport = 5060, indev = "lan0", outdev = "wan0"}
  for i = 1, 300 do
    local d = h:send(sip, "forward")
    expect_verdict(d, "accept", "SIP packet " .. i)
    expect_eq(d.tags, {"voip"})
  end
end)

test("untagged traffic is rate-limited on the uplink", function()
  local web = packet.udp{dport = 443, indev = "lan0", outdev = "wan0"}
  local dropped = 0
  for _ = 1, 300 do
    if h:send(web, "forward").verdict == "drop" then dropped = dropped + 1 end
  end
  expect_true(dropped > 0)
end)
