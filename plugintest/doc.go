// Package plugintest owns `luafw test`: it finds *_test.lua files, runs
// each in a Lua state of its own with the test API (harness, test,
// expect_*, packet builders, a fake clock) and reports like go test, with
// the test file's file:line for every failure.
//
// A test file loads plugins into engines of its own with harness() or
// harness_config(), runs packets through one hook (h:run) or along a
// kernel path with connection tracking (h:send), and asserts on the
// decisions. Every file gets fresh engines and a clock that starts at
// EpochUnix and moves only by clock.advance(); time.now(), state TTLs and
// token buckets in the plugins follow it, and the plugins' timers run as
// it passes their due times (engines with ManualTimers). docs/plugins.md and
// docs/lua-api.md describe the API for plugin authors.
package plugintest
