test("spins", function()
  while true do end
end)
test("after", function() end)
