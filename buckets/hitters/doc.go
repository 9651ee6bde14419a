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
// # Why a filter in front of the counters
//
// Taking over a counter (unindex the old key, copy the new one, sift the
// heap) costs about three increments, and a flood of distinct keys would
// pay it on every record. Filtered Space-Saving (Homem and Carvalho 2010)
// puts filterCells cells, picked by the key's hash, in front of the
// counters. With μ the smallest count (the floor), recording cost c for
// key x goes:
//
//   - x counted: its count grows by c, as before;
//   - counters not all in use: x takes a free one (every cell is 0 then);
//   - cell(x) + c ≤ μ: cell(x) grows by c, and nothing else changes;
//   - otherwise x takes over the smallest counter, held by y: x's count is
//     cell(x) + c and its error cell(x); y's cell is raised to
//     max(cell(y), μ). x's cell is left as it is: other keys share it.
//
// The guarantee is Space-Saving's, by induction over records, with true(k)
// the cost key k has had so far:
//
//  1. Every cell is at most μ. μ never falls: counts only grow, and a
//     takeover replaces the count μ by cell(x) + c > μ. A cell grows only
//     by an add that leaves it at most μ, or by a raise to μ.
//  2. A key k not counted has true(k) ≤ cell(k) ≤ μ. Recording k adds to
//     its cell too; cells never fall; a key losing its counter had at most
//     its count, μ, which its raised cell now covers; keys sharing a cell
//     share a bound that covers each of them.
//  3. A counted key k has count − error ≤ true(k) ≤ count, and error ≤ μ.
//     On takeover, true(x) ≤ cell(x) + c = count by 2, count − error = c ≤
//     true(x), and error = cell(x) ≤ μ by 1; increments keep all three.
//  4. The counts sum to at most total: a filtered add leaves them alone,
//     and a takeover changes one from μ to cell(x) + c ≤ μ + c. So
//     Capacity·μ ≤ total.
//
// Hence every key above total/Capacity is counted, and every error and
// the floor are within total/Capacity: the bounds Merge relies on, with
// the floor standing in for the keys a summary does not list. The filter
// costs tightness, not the bound: counts may sum to less than total, and
// the keys of a cell share its error. In exchange, a flood of distinct
// keys takes over a counter on about Capacity/(Capacity + filterCells) of
// its records (2% with 4096 cells instead of all of them), skewed traffic
// on far fewer.
//
// A cell holds 32 bits. Once μ exceeds that (over 2^32·Capacity of cost on
// one side in one second), the summary is plain Space-Saving for the rest
// of its second: a key not counted takes over the smallest counter with
// count μ + c and error μ, sound because every key not counted has at most
// μ (2), and the cells are no longer read or raised: from then on μ itself
// bounds every key not counted, including those that lose their counter.
// μ never falls, so the cells stay unused until the reset that empties
// them.
//
// No maintained Go heavy-hitters library was available to the project (see
// docs/PERFORMANCE.md); this one is small, allocation-free on the hot path
// and keeps keys inline, which a general-purpose library would not.
//
// # Why one open second and a ring of closed ones
//
// Space-Saving summaries are mergeable: summing counts, with the floor of a
// summary standing in for a key it does not list, keeps the guarantee with
// the bound summed (Agarwal et al., "Mergeable summaries", 2012). A rule
// keeps, per side (admitted, denied), one summary per second: the open one
// being recorded, and the last 60 closed ones in a ring. The last 10 s and
// the last minute are the merges of the last 10 and 60 whole seconds, and
// a cluster view is the merge of every node's. A key heavier than
// total/Capacity over a window is heavier than its share in at least one
// second, so it is listed there and survives the merge.
//
// Only the open second needs the filter cells and the index; closing a
// second (the first record of a later one does it) copies its counters,
// counts, total and floor into the ring. So the cells cost memory once per
// side, not per second, and a rule can afford many of them. The open
// summary also stays at one address, warm in the cache, instead of moving
// to another slot of the ring every second.
//
// # Memory
//
// A counter keeps its key inline (up to KeyBytes, 62; a longer key is cut
// at a character boundary and shown with "…", and keys sharing that prefix
// count together), so recording never allocates and memory is fixed: a
// closed second is about 5 KB (64 counters of 72 bytes and their 8-byte
// counts), an open one 22 KB (the same, 4096 cells of 4 bytes, a 256-slot
// index and the heap), 670 KB per rule that has seen traffic
// (TestMemoryPerRule measures it), whatever the number of distinct keys.
package hitters
