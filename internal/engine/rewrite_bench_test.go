package engine

import "testing"

// BenchmarkRewrite: one packet (64-byte TCP payload) through a plugin that
// rewrites its payload (same length) or its TTL, beside the trivial plugin,
// in the same run: the cost of the copy, the re-decode and the checksums.
func BenchmarkRewrite(b *testing.B) {
	for _, tc := range []struct{ name, code string }{
		{"trivial", `fw.register{hook="forward", fn=function(pkt) return fw.ACCEPT end}`},
		{"payload", `fw.register{hook="forward", fn=function(pkt) pkt:set_payload(string.upper(pkt.payload)) end}`},
		{"ttl", `fw.register{hook="forward", fn=function(pkt) pkt:set_ttl(33) end}`},
		{"go-payload", ""},
	} {
		b.Run(tc.name, func(b *testing.B) {
			e := benchEngine(b)
			if tc.code == "" {
				payload := make([]byte, 64)
				if err := e.RegisterFunc(Forward, 0, "go", func(c *Ctx) Verdict {
					if err := c.SetPayload(payload); err != nil {
						b.Error(err)
					}
					return Accept
				}); err != nil {
					b.Fatal(err)
				}
			} else if err := e.Load([]PluginSpec{src("p", tc.code)}); err != nil {
				b.Fatal(err)
			}
			runBench(b, e, benchPacket(b), Accept)
		})
	}
}
