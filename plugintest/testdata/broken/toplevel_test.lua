test("declared", function() end)
error("top level broke")
