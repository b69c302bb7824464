local h = harness("watch.lua")

test("pkt:capture() shows as capture_by", function()
  local d = h:run(packet.tcp{dport = 23}, "input")
  expect_eq(d.verdict, "accept")
  expect_eq(d.capture_by, "watch")
  expect_eq(h:run(packet.tcp{dport = 22}, "input").capture_by, nil)
  expect_eq(h:send(packet.tcp{dport = 23}, "forward").capture_by, "watch")
end)
