local h = harness("flow_budget.lua", {budget = 1000, window = 10})
local function pkt(sport) return packet.udp{dst = "203.0.113.5", sport = sport, dport = 27015, payload = string.rep("x", 172)} end

test("a flow over its budget is dropped until its window ends; other flows are not", function()
  for i = 1, 5 do expect_verdict(h:run(pkt(40000), "forward"), "accept", "packet " .. i) end -- 5 x 200 bytes
  expect_verdict(h:run(pkt(40000), "forward"), "drop")
  expect_verdict(h:run(pkt(40001), "forward"), "accept")  -- another flow: its own table
  clock.advance(10)
  expect_verdict(h:run(pkt(40000), "forward"), "accept")  -- a new window
end)
