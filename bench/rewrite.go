package main

import "context"

// rewriteRows: the UDP flood through luafw with a plugin that rewrites every
// payload (bench/plugins/rewrite.lua), to compare with the trivial row.
func (b *bench) rewriteRows(ctx context.Context) error {
	return b.luafw(ctx, "rewrite-q1", func(c *consumer) error {
		r := Row{ID: "udp/luafw-rewrite/q1", Setup: "luafw, rewriting every payload", Queues: 1}
		if err := b.flood(ctx, &r, c, 0, false); err != nil {
			return err
		}
		b.add(r)
		return nil
	})
}
