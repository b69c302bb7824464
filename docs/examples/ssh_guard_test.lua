local h = harness("ssh_guard.lua", {rate = 1, burst = 3, ban = 60, allow = {"10.9.0.0/16"}})

local function syn(src)
  return packet.tcp{src = src, dst = "10.0.0.2", sport = 40000, dport = 22, flags = "S"}
end

test("bans after the burst", function()
  local p = syn("10.0.0.1")
  for i = 1, 3 do
    expect_verdict(h:run(p, "input"), "accept", "attempt " .. i)
  end
  local d = h:run(p, "input")
  expect_verdict(d, "drop")
  expect_eq(d.tags, {"ssh-banned"})
  local logs = h:logs()
  expect_eq(#logs, 1)
  expect_eq(logs[1].msg, "ssh source banned")
  expect_eq(logs[1].src, "10.0.0.1")
end)

test("the ban outlasts the bucket", function()
  local p = syn("10.0.0.1") -- banned by the test above: state is kept per file
  clock.advance(30) -- the bucket is full again, the ban still holds
  expect_verdict(h:run(p, "input"), "drop")
  clock.advance(31) -- 61 s after the ban
  expect_verdict(h:run(p, "input"), "accept")
end)

test("other sources and established traffic are not limited", function()
  expect_verdict(h:run(syn("10.0.0.7"), "input"), "accept")
  local ack = packet.tcp{src = "10.0.0.1", dport = 22, flags = "A"}
  for _ = 1, 10 do
    expect_verdict(h:run(ack, "input"), "accept")
  end
end)

test("allowed sources are never banned", function()
  for _ = 1, 10 do
    expect_verdict(h:run(syn("10.9.1.1"), "input"), "accept")
  end
end)

test("a fresh harness has fresh state", function()
  local other = harness("ssh_guard.lua", {burst = 1})
  expect_verdict(other:run(syn("10.0.0.1"), "input"), "accept")
  expect_verdict(other:run(syn("10.0.0.1"), "input"), "drop")
end)
