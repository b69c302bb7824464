local h = harness("bad.lua")
test("never runs", function() end)
