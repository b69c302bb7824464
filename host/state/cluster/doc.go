// Package cluster owns the cluster-wide state of a fleet of luafw nodes:
// maps, counters and token-bucket families that every node sharing one
// Redis-protocol server (Redis, Valkey) sees.
//
// # Guarantees
//
// The packet path never waits on the network. Every object keeps a local
// copy (a host/state object) that reads and writes go to; writes are also
// queued and a background loop sends them every sync interval (default
// 100 ms) in one pipeline, and publishes them on one pub/sub channel that
// every node applies to its own copy. So a write on one node is visible on
// the others about one sync interval plus one round trip later.
//
//   - Maps: each entry is one Redis hash with the entry's TTL, so Redis
//     holds the fleet's view. Every write carries a version: a hybrid
//     logical clock reading and the writer's node id, compared the same
//     way everywhere. Redis applies a batch of writes in one server-side
//     script (applyScript) that keeps each only if it is newer than what
//     the entry holds, turns deletes into tombstones (kept TombstoneTTL)
//     and publishes what it accepted with the map's sequence numbers;
//     every node applies a published entry only if it is newer than its
//     copy's. Concurrent writes to one key therefore end as the newest on
//     every node and in Redis; increments always add (Redis gives the sum
//     a version of its own, newer than both). A node that starts or
//     reconnects loads the map (SCAN) without dropping what arrived
//     meanwhile; a gap in the sequence numbers, or a periodic check of
//     them against Redis (CheckEvery), reloads a map that missed messages.
//   - Counters: the local value is the last global value read plus this
//     node's unsent increments; each interval sends INCRBY (or GET) and
//     takes the server's answer as the new global value.
//   - Buckets: each node decides with its own token bucket, and charges it
//     with the tokens the other nodes report having taken (pub/sub). Over
//     any window of T seconds the whole cluster of N nodes admits at most
//     rate·(T + (N−1)·d) + N·burst, d being the sync interval plus the
//     delivery delay: the excess over rate·T + burst is what the other
//     nodes took that this node has not heard of yet. Kong's sync_rate and
//     Envoy's local-plus-global limits make the same trade.
//
// # Failure
//
// While Redis cannot be reached, every node keeps deciding on its local
// copies. Bucket families then switch to a fallback bucket of FallbackShare
// times their rate and burst (with two nodes, 0.5 keeps the cluster-wide
// total); map writes and counter increments stay queued (up to MaxPending
// map operations; the rest are dropped and counted). The loop retries with
// exponential backoff (up to 5 s); on reconnection it reloads every map
// from Redis, keeping local writes still queued, then sends the queue
// (writes queued longer than TombstoneTTL are dropped instead: they could
// bring back a key deleted since). A
// failed pipeline may have been applied in part, so an increment can be
// counted twice across a failure: counters are approximate there too.
//
// # Costs
//
// A write costs two mutexes, a clock reading and one append on the packet
// path; a bucket take one extra map update. Per node and interval the
// loop sends one pipeline (one script call per map per 256 queued writes,
// one command per counter, one PUBLISH of bucket charges), so Redis load
// is about nodes × (1/interval) round trips a second however many
// packets pass; see docs/scale.md.
package cluster
