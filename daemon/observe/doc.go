// Package observe owns what the daemon reports about single decisions:
// decision events (one JSON line per packet whose verdict was chosen, to a
// size-rotated file or stdout; events.go) and packet capture (the packets
// themselves, to size-rotated pcapng files whose per-packet comment names
// the plugin, callback, hook and verdict; capture.go).
//
// Nothing here blocks the packet path. A queue reader that sees a chosen
// verdict copies what it needs (a fixed-size Event, or the packet's bytes
// into a pooled buffer) into a bounded channel and moves on; one writer
// goroutine per output encodes and writes in batches. When a writer falls
// behind and its channel is full, the record is dropped and counted
// ("lost"). Events are rate-limited before they are queued by a lock-free
// token bucket (internal/tokenbucket; a refused event costs a few
// nanoseconds, an allowed one a compare-and-swap and 16 bytes); what the
// limit refuses is counted ("suppressed"), and both counts are reported
// once a second as a record of type "suppressed" while they grow.
//
// Costs: with both outputs off the daemon does not call in here (a nil
// check per packet). With them on, a packet whose verdict is not chosen
// costs one mask test; a chosen one costs a header decode, a clock read and
// a channel send (events), or a copy of its bytes (capture).
package observe
