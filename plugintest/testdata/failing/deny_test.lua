-- Deliberately failing: the Go tests check the lines reported.
local h = harness("deny.lua")

test("passes", function()
  expect_verdict(h:run(packet.tcp{dport = 23}, "input"), "drop")
end)

test("wrong verdict", function()
  expect_verdict(h:run(packet.tcp{dport = 23}, "input"), "accept")
  expect_eq(1 + 1, 3, "arithmetic")
  expect_true(false)
end)

test("fail stops", function()
  fail("giving up")
  expect_true(false, "never reached")
end)

test("lua error", function()
  local t = nil
  print(t.field)
end)
