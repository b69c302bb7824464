package sandbox

import (
	"strings"
	"testing"

	lua "github.com/luafw/luafw/lua"
)

// benchPayload is a 512-byte HTTP request, the kind of payload a plugin
// matches patterns against.
var benchPayload = func() string {
	s := "GET /index.html HTTP/1.1\r\nHost: www.example.com\r\n" +
		"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0\r\n" +
		"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n" +
		"Accept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate, br\r\n" +
		"Connection: keep-alive\r\nCookie: session="
	s += strings.Repeat("x", 512-4-len(s)) + "\r\n\r\n"
	return s
}()

var patternBenches = []struct{ name, fn, pat, repl string }{
	{"find-digits", "find", `%d+`, ""},
	{"match-GET", "match", `^GET /`, ""},
	{"match-host", "match", "Host: ([^\r\n]+)", ""},
	{"match-dns-name", "match", `([%w%-]+%.[%w%-]+%.com)`, ""},
	{"match-miss", "match", `Referer: (%S+)`, ""},
	{"gmatch-lines", "gmatch", "([^\r\n]+)", ""},
	{"gsub-spaces", "gsub", `%s+`, " "},
}

// BenchmarkPatterns compares the sandbox's pattern functions (sandbox/...)
// with gopher-lua's (gopher/...) on ordinary patterns.
func BenchmarkPatterns(b *testing.B) {
	ours := NewState()
	defer ours.Close()
	ref := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer ref.Close()
	ref.Push(ref.NewFunction(lua.OpenString))
	ref.Call(0, 0)
	for _, bc := range patternBenches {
		for _, impl := range []struct {
			name string
			L    *lua.LState
		}{{"sandbox", ours}, {"gopher", ref}} {
			b.Run(impl.name+"/"+bc.name, func(b *testing.B) {
				L := impl.L
				str := L.GetGlobal("string")
				fn := L.GetField(str, bc.fn).(*lua.LFunction)
				args := []lua.LValue{lua.LString(benchPayload), lua.LString(bc.pat)}
				if bc.fn == "gsub" {
					args = append(args, lua.LString(bc.repl))
				}
				b.ReportAllocs()
				for b.Loop() {
					if bc.fn == "gmatch" {
						// The generic for's protocol: iterator, state.
						if err := L.CallByParam(lua.P{Fn: fn, NRet: 2, Protect: true}, args...); err != nil {
							b.Fatal(err)
						}
						iter, state := L.Get(-2), L.Get(-1)
						L.Pop(2)
						for {
							if err := L.CallByParam(lua.P{Fn: iter, NRet: 1, Protect: true}, state); err != nil {
								b.Fatal(err)
							}
							v := L.Get(-1)
							L.Pop(1)
							if v == lua.LNil {
								break
							}
						}
						continue
					}
					if err := L.CallByParam(lua.P{Fn: fn, NRet: 1, Protect: true}, args...); err != nil {
						b.Fatal(err)
					}
					if L.Get(-1) == lua.LNil && bc.name != "match-miss" {
						b.Fatalf("%s: no match", bc.name)
					}
					L.Pop(1)
				}
			})
		}
	}
}
