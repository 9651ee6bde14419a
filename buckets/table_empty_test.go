package buckets

import "testing"

func TestEmptyStartsEveryBucketEmpty(t *testing.T) {
	lim := Limit{Interval: 100, Burst: 5}
	tab := NewTable()
	used := []byte("used")
	tab.Take(used, lim, 1, 0) // 4 left, present in the table
	tab.Empty(1000)
	for _, key := range [][]byte{used, []byte("absent")} {
		if out := tab.Peek(key, lim, 1000); out.Remaining != 0 || out.Reset != 500 {
			t.Fatalf("%s right after Empty: %+v, want empty, full in 500ns", key, out)
		}
		if out := tab.Take(key, lim, 1, 1050); out.Allowed {
			t.Fatalf("%s took a token half an interval after Empty: %+v", key, out)
		}
		if out := tab.Take(key, lim, 1, 1100); !out.Allowed || out.Remaining != 0 {
			t.Fatalf("%s one interval after Empty: %+v, want the one refilled token", key, out)
		}
	}
	// Long after, buckets are full again and an earlier Empty changes nothing.
	tab.Empty(500)
	if out := tab.Take(used, lim, 5, 10_000); !out.Allowed {
		t.Fatalf("take of the full burst long after Empty: %+v", out)
	}
}

// A refund gives back a take made since Empty; one made before gives
// nothing back (the bucket is empty as of Empty either way), which errs on
// the safe side.
func TestEmptyAndRefunds(t *testing.T) {
	lim := Limit{Interval: 100, Burst: 5}
	tab := NewTable()
	key := []byte("k")
	tab.Take(key, lim, 1, 0)
	tab.Empty(1000)
	tab.Refund(key, lim, 1, 1000)
	if out := tab.Peek(key, lim, 1000); out.Remaining != 0 {
		t.Fatalf("refund of a take from before Empty: %+v, want still empty", out)
	}
	if out := tab.Take(key, lim, 2, 1200); !out.Allowed || out.Remaining != 0 {
		t.Fatalf("take of the 2 tokens refilled since Empty: %+v", out)
	}
	tab.Refund(key, lim, 2, 1200)
	if out := tab.Take(key, lim, 2, 1200); !out.Allowed {
		t.Fatalf("refunded tokens taken since Empty were not given back: %+v", out)
	}
}

func TestEmptyThenSweepKeepsBucketsEmpty(t *testing.T) {
	lim := Limit{Interval: 100, Burst: 5}
	tab := NewTable()
	key := []byte("k")
	tab.Take(key, lim, 1, 0)
	tab.Empty(1000)
	if n := tab.Sweep(1000); n != 1 { // the stored TAT says full; the floor does not
		t.Fatalf("Sweep evicted %d, want 1", n)
	}
	if out := tab.Take(key, lim, 1, 1000); out.Allowed {
		t.Fatalf("a bucket evicted after Empty came back full: %+v", out)
	}
}
