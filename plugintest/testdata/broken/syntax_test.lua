test("x", function()
  expect_eq(1, 1
end)
