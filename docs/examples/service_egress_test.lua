local h = harness("service_egress.lua", {services = {"system.slice/nginx.service", "system.slice/backup.service"}})
local function syn(cg) return packet.tcp{dst = "10.1.2.3", dport = 5432, flags = "S", cgroup = cg} end

test("listed services connect; others are refused and logged", function()
  expect_verdict(h:run(syn("system.slice/nginx.service"), "output"), "accept")
  expect_verdict(h:run(syn("system.slice/backup.service"), "output"), "accept")
  expect_verdict(h:run(syn("user.slice/user-1000.slice/session-3.scope"), "output"), "reject")
  local logs = h:logs()
  expect_eq(#logs, 1)
  expect_eq(logs[1].cgroup, "user.slice/user-1000.slice/session-3.scope")
  expect_verdict(h:run(packet.tcp{dst = "10.1.2.3", dport = 5432, flags = "S"}, "output"), "reject") -- not known
end)

test("the internet is not this plugin's business", function()
  expect_verdict(h:run(packet.tcp{dst = "192.0.2.80", dport = 443, flags = "S", cgroup = "user.slice"}, "output"), "accept")
end)
