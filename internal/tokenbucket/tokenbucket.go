// Package tokenbucket owns the one token-bucket formula of luafw: a bucket
// holds up to burst tokens and refills at rate tokens per second. Every is
// its lock-free special case of one token a period, for warnings that must
// not flood the log.
//
// # Guarantees
//
// A Bucket is a plain value: its methods take the time and the rate and
// burst as arguments, so a caller with many buckets of one rate and burst
// (a state bucket family) stores 16 bytes per bucket, and chooses its own
// guard (a shard mutex, an atomic pointer). A bucket refills only while
// the clock moves forward: a clock stepping back neither refills nor takes
// away tokens, and later refills count from the latest time seen. A gap of
// any length, up to the whole int64 range, refills exactly to burst and no
// further. A bucket that has refilled to burst behaves as a new one, so a
// caller may drop full buckets.
//
// # Costs
//
// Every method is a few float operations: no allocation, no lock, no clock
// read.
package tokenbucket

// Bucket is the state of one token bucket: its tokens as of its last
// refill. The zero value is an empty bucket refilled last at time 0; use
// Full for a new one.
type Bucket struct {
	n    float64 // tokens at last; at most burst, below 0 only after Charge
	last int64   // unix ns of the last refill
}

// Full returns a bucket holding burst tokens at now (unix ns).
func Full(burst float64, now int64) Bucket { return Bucket{n: burst, last: now} }

// Refill adds the tokens earned since the last refill up to now (unix ns),
// at rate tokens per second, up to burst. A now at or before the last
// refill changes nothing.
func (b *Bucket) Refill(now int64, rate, burst float64) {
	if now > b.last {
		// The difference in uint64 is exact even where int64 would overflow.
		el := uint64(now) - uint64(b.last)
		b.n = min(burst, b.n+float64(el)*rate/1e9)
		b.last = now
	}
}

// Take takes n tokens if the bucket holds at least n, and reports whether
// it did; a refused take changes nothing. Call Refill first.
func (b *Bucket) Take(n float64) bool {
	if b.n >= n {
		b.n -= n
		return true
	}
	return false
}

// Charge takes n tokens whether or not the bucket holds them, leaving it
// at no less than floor tokens (floor <= 0): for tokens spent elsewhere.
// Call Refill first.
func (b *Bucket) Charge(n, floor float64) { b.n = max(floor, b.n-n) }

// Tokens returns the tokens held as of the last refill.
func (b Bucket) Tokens() float64 { return b.n }

// IsFull reports whether the bucket holds burst tokens as of its last
// refill, and so behaves as a new one.
func (b Bucket) IsFull(burst float64) bool { return b.n >= burst }
