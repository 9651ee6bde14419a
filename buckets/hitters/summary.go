package hitters

import (
	"cmp"
	"slices"
)

// Summary is one side (admitted or denied cost) of a rule over a window:
// the heavy hitters with bounds, mergeable with other nodes' summaries of
// the same window. A key's true cost lies in [Count-Error, Count]; a key
// not listed has cost at most Floor.
type Summary struct {
	// Total is the exact cost recorded in the window.
	Total int64 `json:"total"`
	// Floor bounds the cost of every key not in Entries.
	Floor int64 `json:"floor"`
	// Entries are sorted by Count, largest first (then by Key).
	Entries []Entry `json:"entries"`
	// byKey indexes Entries for Lookup, built on its first call.
	byKey map[string]int
}

// Entry is one heavy hitter.
type Entry struct {
	Key   string `json:"key"`
	Count int64  `json:"count"`
	Error int64  `json:"error"`
}

// Lookup returns key's count and error: its entry's, or Floor and Floor
// (between 0 and Floor) when it is not listed.
func (s *Summary) Lookup(key string) (count, err int64, listed bool) {
	if s.byKey == nil {
		s.byKey = make(map[string]int, len(s.Entries))
		for i, e := range s.Entries {
			s.byKey[e.Key] = i
		}
	}
	if i, ok := s.byKey[key]; ok {
		return s.Entries[i].Count, s.Entries[i].Error, true
	}
	return s.Floor, s.Floor, false
}

// Truncate keeps the k largest entries; the floor rises to the largest
// count dropped, so the bounds still hold for every key.
func (s *Summary) Truncate(k int) {
	if k < 0 || len(s.Entries) <= k {
		return
	}
	s.Floor = max(s.Floor, s.Entries[k].Count)
	s.Entries = s.Entries[:k]
	s.byKey = nil
}

// Merge combines summaries of disjoint parts of a stream (seconds of one
// node, or nodes of one window) into a summary of the whole: counts add,
// and a summary that does not list a key adds its floor to the key's count
// and error. The bounds of the result are the sums of the parts' bounds.
func Merge(parts ...Summary) Summary {
	var m merger
	for i := range parts {
		m.addEntries(&parts[i])
	}
	return m.result()
}

// merger accumulates summaries for Merge and Rule.Window.
type merger struct {
	total, floor int64
	keys         map[string]*merged
}

type merged struct {
	count, lower int64
	floors       int64 // floors of the parts that list the key
}

func (m *merger) entry(key string, floor int64) *merged {
	if m.keys == nil {
		m.keys = make(map[string]*merged)
	}
	e, ok := m.keys[key]
	if !ok {
		e = new(merged)
		m.keys[key] = e
	}
	e.floors += floor
	return e
}

func (m *merger) addEntries(s *Summary) {
	m.total += s.Total
	m.floor += s.Floor
	for _, x := range s.Entries {
		e := m.entry(x.Key, s.Floor)
		e.count += x.Count
		e.lower += x.Count - x.Error
	}
}

func (m *merger) addClosed(s *closed) {
	m.total += s.total
	m.floor += s.floor
	for i := range s.n {
		c := &s.counters[i]
		e, ok := m.keys[string(c.key[:c.keyLen])] // no allocation for a key already merged
		if ok && !c.cut {
			e.floors += s.floor
		} else {
			e = m.entry(c.displayKey(), s.floor)
		}
		e.count += s.counts[i]
		e.lower += s.counts[i] - c.err
	}
}

func (m *merger) result() Summary {
	out := Summary{Total: m.total, Floor: m.floor, Entries: make([]Entry, 0, len(m.keys))}
	for key, e := range m.keys {
		count := e.count + m.floor - e.floors
		out.Entries = append(out.Entries, Entry{Key: key, Count: count, Error: count - e.lower})
	}
	slices.SortFunc(out.Entries, func(a, b Entry) int {
		if c := cmp.Compare(b.Count, a.Count); c != 0 {
			return c
		}
		return cmp.Compare(a.Key, b.Key)
	})
	return out
}
