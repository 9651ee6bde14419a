package rules

import (
	"reflect"
	"testing"
	"time"
)

func mustParse(t *testing.T, doc string) *Set {
	t.Helper()
	s, err := Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Diff names rules added and removed, and for every changed rule each
// field with the direction its limit moved.
func TestDiffNamesEveryChange(t *testing.T) {
	old := mustParse(t, `{"rules": [
		{"name": "same", "key": ["ip"], "limit": {"rate": 10, "per": "1s"}},
		{"name": "gone", "key": ["ip"], "limit": {"rate": 10, "per": "1s"}},
		{"name": "raised", "key": ["ip"], "limit": {"rate": 10, "per": "1s", "burst": 20}},
		{"name": "lowered", "key": ["ip"], "limit": {"rate": 10, "per": "1s"}},
		{"name": "matcher", "match": {"route": "/a/*"}, "key": ["ip"], "limit": {"rate": 10, "per": "1s"}},
		{"name": "rekeyed", "key": ["ip"], "limit": {"rate": 10, "per": "1s"}},
		{"name": "quota", "key": ["tenant"], "quota": {"limit": 100, "per": "day"}},
		{"name": "kind", "key": ["tenant"], "quota": {"limit": 100, "per": "day"}},
		{"name": "shadowed", "key": ["ip"], "limit": {"rate": 10, "per": "1s"}}]}`)
	next := mustParse(t, `{"rules": [
		{"name": "shadowed", "key": ["ip"], "limit": {"rate": 10, "per": "1s"}, "shadow": true},
		{"name": "new", "key": [], "limit": {"rate": 5, "per": "1s"}},
		{"name": "same", "key": ["ip"], "limit": {"rate": 10, "per": "1s"}},
		{"name": "raised", "key": ["ip"], "limit": {"rate": 20, "per": "1s", "burst": 40}},
		{"name": "lowered", "key": ["ip"], "limit": {"rate": 10, "per": "1m"}},
		{"name": "matcher", "match": {"route": "/b/*"}, "key": ["ip"], "limit": {"rate": 10, "per": "1s"}},
		{"name": "rekeyed", "key": [], "limit": {"rate": 10, "per": "1s"}},
		{"name": "quota", "key": ["tenant"], "quota": {"limit": 50, "per": "hour"}},
		{"name": "kind", "key": ["tenant"], "limit": {"rate": 1, "per": "1s"}}]}`)
	got := Diff(old, next)
	want := Change{
		Added:   []string{"new"},
		Removed: []string{"gone"},
		Changed: []RuleChange{
			{Name: "shadowed", Fields: []FieldChange{{Field: "shadow", Old: false, New: true, Direction: Changed}}},
			{Name: "raised", Fields: []FieldChange{
				{Field: "limit.rate", Old: int64(10), New: int64(20), Direction: Raised},
				{Field: "limit.burst", Old: int64(20), New: int64(40), Direction: Raised}}},
			{Name: "lowered", Fields: []FieldChange{
				{Field: "limit.per", Old: Duration(time.Second), New: Duration(time.Minute), Direction: Lowered}}},
			{Name: "matcher", Fields: []FieldChange{
				{Field: "match", Old: map[string]string{"route": "/a/*"}, New: map[string]string{"route": "/b/*"}, Direction: Changed}}},
			{Name: "rekeyed", Fields: []FieldChange{{Field: "key", Old: []string{"ip"}, New: []string{}, Direction: Changed}}},
			{Name: "quota", Fields: []FieldChange{
				{Field: "quota.limit", Old: int64(100), New: int64(50), Direction: Lowered},
				// The same limit per hour admits more than per day.
				{Field: "quota.per", Old: Day, New: Hour, Direction: Raised}}},
			{Name: "kind", Fields: []FieldChange{{Field: "kind", Old: "quota", New: "limit", Direction: Changed}}},
		},
		Unchanged: 1,
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Diff:\n got %+v\nwant %+v", got, want)
	}
	if !got.Changed[1].Limits() || got.Changed[3].Limits() {
		t.Errorf("Limits(): raised %v, matcher-only %v; want true, false", got.Changed[1].Limits(), got.Changed[3].Limits())
	}
}

// The same document compares as unchanged, and an implicit burst equals
// the explicit one Parse fills in.
func TestDiffOfEqualDocuments(t *testing.T) {
	a := mustParse(t, `{"rules": [{"name": "r", "key": ["ip"], "limit": {"rate": 10, "per": "1s"}}]}`)
	b := mustParse(t, `{"rules": [{"name": "r", "key": ["ip"], "limit": {"rate": 10, "per": "1s", "burst": 10}}]}`)
	got := Diff(a, b)
	if len(got.Added)+len(got.Removed)+len(got.Changed) != 0 || got.Unchanged != 1 {
		t.Fatalf("Diff of equal rules: %+v", got)
	}
	// Empty lists are written as [], not null.
	if got.Added == nil || got.Removed == nil || got.Changed == nil {
		t.Fatalf("Diff of equal rules has nil lists: %#v", got)
	}
}

// DisplayKeyOf inverts AppendKey, escapes included.
func TestDisplayKeyOfInvertsAppendKey(t *testing.T) {
	c := Compile(mustParse(t, `{"rules": [
		{"name": "two", "key": ["tenant", "ip"], "limit": {"rate": 1, "per": "1s"}},
		{"name": "none", "key": [], "limit": {"rate": 1, "per": "1s"}}]}`))
	for _, tc := range []struct{ rule, key string }{
		{"two", "acme|192.0.2.1"}, {"two", "a\x1fb\x1e|c"}, {"two", "|"}, {"none", ""},
	} {
		i, _ := c.Index(tc.rule)
		r := c.Rule(i)
		attrs, err := r.AttrsForDisplayKey(tc.key)
		if err != nil {
			t.Fatal(err)
		}
		rule, key := DisplayKeyOf(string(r.AppendKey(nil, attrs)))
		if rule != tc.rule || key != tc.key {
			t.Errorf("DisplayKeyOf(AppendKey(%q, %q)) = %q, %q", tc.rule, tc.key, rule, key)
		}
	}
}
