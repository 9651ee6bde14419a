package buckets

import (
	"testing"
)

const slot = int64(1) << indexSlotShift

// installAt installs in key's entry a slice of granted tokens ending at
// deadline, issued a minute earlier.
func installAt(t *testing.T, tab *SliceTable, key string, granted, deadline int64) *Slice {
	t.Helper()
	e := tab.Entry([]byte(key), "r", key)
	s := NewSlice(1, granted, deadline-60e9, deadline, 0, 0)
	e.Install(s, deadline-60e9)
	return s
}

// dueKeys runs Due at now and returns the keys settled, with what each gave back.
func dueKeys(tab *SliceTable, now int64, ahead *RenewAhead) (settled map[string]int64, renew []*SliceEntry) {
	settled = map[string]int64{}
	renew = tab.Due(now, ahead, func(e *SliceEntry, _ *Slice, unused int64) { settled[e.Key] += unused })
	return settled, renew
}

func TestDueSettlesEachExpiredSliceOnceAcrossWrapAround(t *testing.T) {
	tab := NewSliceTable()
	base := int64(1) << 40
	turn := indexSlots * slot
	// Deadlines within one slot, a whole turn apart (same slot position),
	// and more than a turn ahead of the first sweep.
	deadlines := map[string]int64{
		"a": base + 10,
		"b": base + slot - 1,
		"c": base + turn + 10,
		"d": base + 3*turn + 5*slot,
		"e": base + turn/2,
	}
	for k, d := range deadlines {
		installAt(t, tab, k, 7, d)
	}
	seen := map[string]int64{}
	// Sweeps every ~third of a slot, with one gap longer than a whole turn.
	now := base - slot
	for now < base+4*turn {
		step := slot / 3
		if now > base+turn+slot && now < base+turn+2*slot {
			step = 2 * turn
		}
		now += step
		settled, _ := dueKeys(tab, now, nil)
		for k, unused := range settled {
			if deadlines[k] > now {
				t.Fatalf("%s settled at %d before its deadline %d", k, now, deadlines[k])
			}
			if deadlines[k] < now-step-1 {
				t.Fatalf("%s settled at %d, more than a sweep after its deadline %d", k, now, deadlines[k])
			}
			if _, again := seen[k]; again {
				t.Fatalf("%s settled twice", k)
			}
			seen[k] = unused
		}
	}
	for k := range deadlines {
		if seen[k] != 7 {
			t.Errorf("%s: settled %d unused tokens, want 7", k, seen[k])
		}
	}
}

func TestDueFollowsRenewalAndSkipsSpentSlices(t *testing.T) {
	tab := NewSliceTable()
	base := int64(1) << 40
	installAt(t, tab, "renewed", 5, base+slot)
	// A renewal: the refill retires the old slice (settling it in its own
	// call) and installs the next.
	if _, _, unused := tab.Entry([]byte("renewed"), "r", "renewed").Retire(base); unused != 5 {
		t.Fatalf("retiring the first slice: %d unused, want 5", unused)
	}
	installAt(t, tab, "renewed", 9, base+50*slot)
	spent := installAt(t, tab, "spent", 2, base+slot)
	if _, ok := spent.Take(2, at(base)); !ok {
		t.Fatal("take of a fresh slice failed")
	}
	if settled, _ := dueKeys(tab, base+2*slot, nil); len(settled) != 0 {
		t.Fatalf("settled %v: the renewed key's old slice was replaced and the spent one holds nothing", settled)
	}
	if spent.Left() != 0 || spent.left.Load() < 0 {
		t.Fatal("a spent slice was closed: the key's next refill must settle it")
	}
	// The late install: a deadline already behind the sweeper.
	installAt(t, tab, "late", 4, base+slot)
	settled, _ := dueKeys(tab, base+51*slot, nil)
	if settled["late"] != 4 || settled["renewed"] != 9 || len(settled) != 2 {
		t.Fatalf("settled %v, want late 4 and renewed 9 (the slice installed by the renewal)", settled)
	}
}

func TestDueRenewsAheadOnlyKeysInUseAndKeepsTheRest(t *testing.T) {
	tab := NewSliceTable()
	base := int64(1) << 40
	used := installAt(t, tab, "used", 8, base+10*slot)
	tab.Entry([]byte("used"), "r", "used").Touch(used.IssuedAt + 1)
	installAt(t, tab, "quiet", 8, base+10*slot)
	installAt(t, tab, "later", 8, base+100*slot)
	ahead := &RenewAhead{Before: base + 12*slot, MinLife: 1}
	_, renew := dueKeys(tab, base, ahead)
	if len(renew) != 1 || renew[0].Key != "used" {
		t.Fatalf("renew ahead picked %d entries, want the one in use", len(renew))
	}
	// Not renewed (its refill lock was busy, say): it is still settled at its deadline.
	settled, _ := dueKeys(tab, base+11*slot, nil)
	if settled["used"] != 8 || settled["quiet"] != 8 || len(settled) != 2 {
		t.Fatalf("settled %v, want used and quiet, 8 each", settled)
	}
}

func TestDueRenewsAheadAKeyDrainingItsSliceAtItsPace(t *testing.T) {
	tab := NewSliceTable()
	base := int64(1) << 40
	e := tab.Entry([]byte("fast"), "r", "fast")
	e.demand = 10 // tokens per second: a quarter of 100 is left 7.5 s after the grant, looked at after 3.75
	s := NewSlice(1, 100, base, base+300e9, 0, 0)
	e.Install(s, base)
	ahead := func(now int64) *RenewAhead { return &RenewAhead{Before: now + 2*250e6, MinLife: 250e6 + 1} }
	// Slower than foreseen: at the foreseen time 10 of 100 are spent, so it
	// is looked at again when a quarter would be left at the pace seen.
	s.Take(10, at(base+1e9))
	e.Touch(base + 1e9)
	now := base + 8e9
	if _, renew := dueKeys(tab, now, ahead(now)); len(renew) != 0 {
		t.Fatal("renewed ahead a slice with 90 of 100 left")
	}
	s.Take(70, at(now+1e9))
	e.Touch(now + 1e9)
	// 65 tokens above a quarter at 10 per 8 s: 52 s later, looked at after 26.
	if _, renew := dueKeys(tab, now+20e9, ahead(now+20e9)); len(renew) != 0 {
		t.Fatal("looked at again before its re-estimated time")
	}
	if _, renew := dueKeys(tab, now+27e9, ahead(now+27e9)); len(renew) != 1 || renew[0] != e {
		t.Fatalf("a slice down to 20 of 100 was not renewed ahead (%d picked)", len(renew))
	}
}
