// Package buckets holds the node's in-memory token buckets: a sharded table
// of exact, lock-free buckets keyed by (rule, key) bytes. It exists so the
// decision path can take tokens locally in well under 100 ns without
// allocating; it does no I/O and reads no clock (callers pass `now`, int64
// nanoseconds of a monotonic clock).
//
// # Why GCRA, and why one int64
//
// A classic token bucket stores (tokens, last refill time) and needs a lock
// to update both together. GCRA (the generic cell rate algorithm) stores the
// same information as a single number, the theoretical arrival time (TAT):
// the instant at which the bucket will be full again. With Interval = the
// time one token takes to refill and window = Burst·Interval:
//
//	tokens available at now = (now + window − max(TAT, now)) / Interval
//	take cost:  TAT' = max(TAT, now) + cost·Interval, allowed iff TAT' − window ≤ now
//
// Because the whole state is one int64, a take is a load, some integer
// arithmetic and one compare-and-swap; a lost CAS just recomputes from the
// newer value. No floating point, no lost fractions: the bucket admits
// exactly Burst + floor(elapsed/Interval) tokens under sustained demand.
//
// # Why eviction is exact
//
// A bucket whose TAT ≤ now is full, and a full bucket behaves exactly like
// one that does not exist (the first take of a new key starts from a full
// bucket). So Sweep can drop precisely those buckets without changing any
// future decision. The only hazard is a Take that already holds the entry
// pointer while Sweep deletes it: its CAS would then update an orphan and the
// take would be lost. Sweep therefore first CASes the TAT from the value it
// observed to a sentinel under the shard's write lock; whoever wins the CAS
// wins the race, and a Take that sees the sentinel looks the key up again.
// A Take whose `now` is slightly older than a concurrent Sweep's starts a
// re-created bucket from the Sweep's time, never earlier, so clock reads
// racing across goroutines can only make the bucket stricter, never looser.
package buckets
