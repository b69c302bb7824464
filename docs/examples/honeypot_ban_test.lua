local h = harness("honeypot_ban.lua", {ban = 60})

local function syn(src, dport)
  return packet.tcp{src = src, dst = "10.0.0.2", sport = 40000, dport = dport, flags = "S"}
end

test("a honeypot touch bans the source until a timer lifts the ban", function()
  expect_verdict(h:run(syn("198.51.100.7", 22), "input"), "accept")
  expect_verdict(h:run(syn("198.51.100.7", 23), "input"), "drop")
  expect_verdict(h:run(syn("198.51.100.7", 22), "input"), "drop") -- banned
  clock.advance(59)
  expect_verdict(h:run(syn("198.51.100.7", 22), "input"), "drop") -- 59 s: still banned
  clock.advance(1.5)
  expect_verdict(h:run(syn("198.51.100.7", 22), "input"), "accept") -- lifted at 60 s by the timer
end)

test("bans lift one by one, each on time", function()
  h:run(syn("198.51.100.8", 2323), "input")
  clock.advance(30)
  h:run(syn("198.51.100.9", 23), "input")
  clock.advance(31) -- .8 is due, .9 is not
  expect_verdict(h:run(syn("198.51.100.8", 22), "input"), "accept")
  expect_verdict(h:run(syn("198.51.100.9", 22), "input"), "drop")
  clock.advance(30)
  expect_verdict(h:run(syn("198.51.100.9", 22), "input"), "accept")
end)

test("the timers are listed, and the summary line is logged", function()
  local timers = h:timers()
  expect_eq(#timers, 2)
  expect_eq(timers[1].every, 1)
  expect_eq(timers[2].every, 60)
  expect_true(timers[1].runs > 100)
  expect_eq(timers[1].failures, 0)
  h:logs() -- drop the ban lines
  h:run(syn("198.51.100.10", 23), "input")
  h:logs()
  clock.advance(60)
  local logs = h:logs()
  expect_eq(#logs, 1)
  expect_eq(logs[1].msg, "honeypot: bans in force")
end)
