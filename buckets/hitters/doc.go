// Package hitters answers "who is being limited right now": for one rule,
// the keys with the most admitted and the most denied cost over the last 10
// seconds or the last minute, each with a guaranteed error bound. It is a
// pure data structure (no I/O, no clock: callers pass `now`, as to
// buckets.Table) so that the decision path can record into it in a few tens
// of nanoseconds without allocating.
//
// # Why Space-Saving, and why not per-key metrics
//
// Per-key Prometheus series grow with the number of keys an attacker
// invents. A heavy-hitters summary keeps a fixed number of counters instead.
// Space-Saving (Metwally, Agrawal, El Abbadi 2005; weighted form by
// Berinde et al. 2010) keeps Capacity counters: a key already counted adds
// its cost; a new key takes over the smallest counter, inheriting its count
// as the new key's error. Every counted key's count then overstates its
// true cost by at most its error, every key not counted has at most the
// smallest count (the summary's floor), and both are at most total/Capacity.
// So every key whose cost exceeds total/Capacity is listed. A count-min
// sketch with a top-k heap gives the same guarantee with more memory per
// unit of error and several hashes per update.
//
// No maintained Go heavy-hitters library was available to the project (see
// docs/PERFORMANCE.md); this one is small, allocation-free on the hot path
// and keeps keys inline, which a general-purpose library would not.
//
// # Why a ring of one-second summaries
//
// Space-Saving summaries are mergeable: summing counts, with the floor of a
// summary standing in for a key it does not list, keeps the guarantee with
// the bound summed (Agarwal et al., "Mergeable summaries", 2012). A rule
// keeps one summary per side (admitted, denied) per second in a ring of 61;
// the last 10 s and the last minute are the merges of the last 10 and 60
// whole seconds, and a cluster view is the merge of every node's. A key
// heavier than total/Capacity over a window is heavier than its share in at
// least one second, so it is listed there and survives the merge.
//
// # Memory
//
// A counter keeps its key inline (up to KeyBytes; a longer key is cut at a
// character boundary and shown with "…", and keys sharing that prefix count
// together), so recording never allocates and memory is fixed: about
// 6.4 KB per summary, 786 KB per rule that has seen traffic
// (TestMemoryPerRule measures it), whatever the number of distinct keys.
package hitters
