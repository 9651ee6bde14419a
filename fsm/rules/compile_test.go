package rules

import (
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/sluicehq/sluice/api/check"
)

func mustCompileFile(t testing.TB, file string) *Compiled {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	set, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	return Compile(set)
}

// attrsOf builds attributes from name, value pairs.
func attrsOf(pairs ...string) check.Attrs {
	attrs := make(check.Attrs, 0, len(pairs)/2)
	for i := 0; i+1 < len(pairs); i += 2 {
		attrs = append(attrs, check.Attr{Name: pairs[i], Value: pairs[i+1]})
	}
	return attrs
}

func ruleNames(c *Compiled, indexes []int) []string {
	names := make([]string, len(indexes))
	for i, idx := range indexes {
		names[i] = c.Rule(idx).Rule.Name
	}
	return names
}

func TestApplicable(t *testing.T) {
	c := mustCompileFile(t, "../../testdata/rules_spec_example.json")
	cases := []struct {
		attrs check.Attrs
		want  []string
	}{
		{attrsOf("ip", "1.2.3.4", "route", "/api/orders", "method", "GET"), []string{"per-ip"}},
		{attrsOf("ip", "1.2.3.4", "route", "/api/orders", "tenant", "acme"), []string{"per-ip", "tenant", "tenant-monthly"}},
		{attrsOf("route", "/api/orders", "tenant", "acme"), []string{"tenant", "tenant-monthly"}}, // no ip: per-ip skipped
		{attrsOf("ip", "1.2.3.4", "route", "/login", "method", "POST"), []string{"login"}},
		{attrsOf("ip", "1.2.3.4", "route", "/login", "method", "GET"), nil},
		{attrsOf("ip", "1.2.3.4", "route", "/login"), nil}, // a condition on a missing attribute fails
		{attrsOf("ip", "1.2.3.4", "route", "/api"), nil},
		{nil, nil},
	}
	for _, tc := range cases {
		got := ruleNames(c, c.Applicable(tc.attrs, nil))
		if !slices.Equal(got, tc.want) {
			t.Errorf("Applicable(%v) = %q, want %q", tc.attrs, got, tc.want)
		}
	}
}

func TestApplicableAppendsToDst(t *testing.T) {
	c := mustCompileFile(t, "../../testdata/rules_spec_example.json")
	got := c.Applicable(attrsOf("tenant", "acme"), []int{-1})
	if want := []int{-1, 2, 3}; !slices.Equal(got, want) {
		t.Errorf("Applicable = %v, want %v", got, want)
	}
}

func TestCompileCopiesAndFillsBurst(t *testing.T) {
	set := &Set{Rules: []Rule{{Name: "a", Match: map[string]string{"route": "/x"}, Key: []string{"ip"},
		Limit: &Limit{Rate: 3, Per: Duration(time.Second)}}}}
	c := Compile(set)
	set.Rules[0].Match["route"] = "/y"
	set.Rules[0].Key[0] = "tenant"
	set.Rules[0].Limit.Rate = 99
	r := c.Rule(0).Rule
	if r.Match["route"] != "/x" || r.Key[0] != "ip" || r.Limit.Rate != 3 || r.Limit.Burst != 3 {
		t.Errorf("compiled rule = %+v (limit %+v); want the original with burst 3", r, r.Limit)
	}
	if c.Len() != 1 {
		t.Errorf("Len = %d", c.Len())
	}
	if i, ok := c.Index("a"); !ok || i != 0 {
		t.Errorf("Index(a) = %d, %v", i, ok)
	}
	if _, ok := c.Index("b"); ok {
		t.Error("Index(b) found a rule")
	}
}

func TestKeys(t *testing.T) {
	set := &Set{Rules: []Rule{
		{Name: "one", Key: []string{"ip"}, Limit: &Limit{Rate: 1, Per: Duration(time.Second)}},
		{Name: "two", Key: []string{"tenant", "ip"}, Limit: &Limit{Rate: 1, Per: Duration(time.Second)}},
	}}
	c := Compile(set)
	attrs := attrsOf("ip", "1.2.3.4", "tenant", "acme")
	cases := []struct {
		rule        int
		attrs       check.Attrs
		key         string
		displayKey  string
		description string
	}{
		{0, attrs, "one\x001.2.3.4", "1.2.3.4", "single attribute"},
		{1, attrs, "two\x00acme\x1f1.2.3.4", "acme|1.2.3.4", "attributes in key order"},
		{1, attrsOf("ip", "b", "tenant", "a\x1fb"), "two\x00a\x1e\x1fb\x1fb", "a\x1fb|b", "separator escaped"},
		{1, attrsOf("ip", "\x1eb", "tenant", "a"), "two\x00a\x1f\x1e\x1eb", "a|\x1eb", "escape escaped"},
	}
	for _, tc := range cases {
		r := c.Rule(tc.rule)
		if got := string(r.AppendKey([]byte("prefix:"), tc.attrs)); got != "prefix:"+tc.key {
			t.Errorf("%s: AppendKey = %q, want %q", tc.description, got, "prefix:"+tc.key)
		}
		if got := r.DisplayKey(tc.attrs); got != tc.displayKey {
			t.Errorf("%s: DisplayKey = %q, want %q", tc.description, got, tc.displayKey)
		}
		back, err := r.AttrsForDisplayKey(tc.displayKey)
		if err != nil {
			t.Fatalf("%s: AttrsForDisplayKey: %v", tc.description, err)
		}
		if got := string(r.AppendKey(nil, back)); got != tc.key {
			t.Errorf("%s: key from display key = %q, want %q", tc.description, got, tc.key)
		}
	}
	// Without escaping these two would share the bucket "two\x00a\x1fb\x1fc".
	left := c.Rule(1).AppendKey(nil, attrsOf("tenant", "a\x1fb", "ip", "c"))
	right := c.Rule(1).AppendKey(nil, attrsOf("tenant", "a", "ip", "b\x1fc"))
	if string(left) == string(right) {
		t.Errorf("distinct values share the key %q", left)
	}
	if _, err := c.Rule(1).AttrsForDisplayKey("acme"); err == nil {
		t.Error("AttrsForDisplayKey accepted a key with too few values")
	}
}

func TestHotPathDoesNotAllocate(t *testing.T) {
	c := mustCompileFile(t, "../../testdata/rules_spec_example.json")
	attrs := attrsOf("ip", "203.0.113.7", "route", "/api/orders", "method", "GET", "tenant", "acme")
	dst := make([]int, 0, c.Len())
	key := make([]byte, 0, 128)
	allocs := testing.AllocsPerRun(1000, func() {
		dst = c.Applicable(attrs, dst[:0])
		for _, i := range dst {
			key = c.Rule(i).AppendKey(key[:0], attrs)
		}
	})
	if allocs != 0 {
		t.Errorf("Applicable+AppendKey allocate %v times per run", allocs)
	}
	if len(dst) != 3 {
		t.Errorf("expected 3 applicable rules, got %d", len(dst))
	}
}

// tenRules is a realistic mix of exact, prefix, suffix and general matchers.
func tenRules() *Set {
	limit := &Limit{Rate: 10, Per: Duration(time.Second)}
	set := &Set{Rules: []Rule{
		{Name: "ping", Match: map[string]string{"route": "/ping"}, Key: []string{"ip"}, Limit: limit},
		{Name: "api", Match: map[string]string{"route": "/api/*"}, Key: []string{"ip"}, Limit: limit},
		{Name: "login", Match: map[string]string{"route": "/login", "method": "POST"}, Key: []string{"ip"}, Limit: limit},
		{Name: "images", Match: map[string]string{"route": "*.png"}, Key: []string{"ip"}, Limit: limit},
		{Name: "orders", Match: map[string]string{"route": "/api/*/orders/*"}, Key: []string{"tenant"}, Limit: limit},
		{Name: "tenant", Key: []string{"tenant"}, Limit: limit},
		{Name: "tenant-ip", Key: []string{"tenant", "ip"}, Limit: limit},
		{Name: "admin", Match: map[string]string{"host": "admin.*"}, Key: []string{"ip"}, Limit: limit},
		{Name: "writes", Match: map[string]string{"method": "PUT"}, Key: []string{"tenant"}, Limit: limit},
		{Name: "monthly", Key: []string{"tenant"}, Quota: &Quota{Limit: 1000, Per: Month}},
	}}
	if err := set.Validate(); err != nil {
		panic(fmt.Sprint("tenRules: ", err))
	}
	return set
}

func BenchmarkApplicable10Rules(b *testing.B) {
	c := Compile(tenRules())
	attrs := attrsOf("ip", "203.0.113.7", "route", "/api/v1/orders/42", "method", "GET", "tenant", "acme", "host", "shop.example.com")
	dst := make([]int, 0, c.Len())
	b.ReportAllocs()
	for b.Loop() {
		dst = c.Applicable(attrs, dst[:0])
	}
	if len(dst) != 5 { // api, orders, tenant, tenant-ip, monthly
		b.Fatalf("applicable = %q", ruleNames(c, dst))
	}
}

func BenchmarkAppendKey(b *testing.B) {
	c := Compile(tenRules())
	r := c.Rule(6)
	attrs := attrsOf("ip", "203.0.113.7", "tenant", "acme")
	key := make([]byte, 0, 64)
	b.ReportAllocs()
	for b.Loop() {
		key = r.AppendKey(key[:0], attrs)
	}
}

// referenceApplicable states the rule semantics directly on the Set.
func referenceApplicable(set *Set, attrs check.Attrs) []int {
	var out []int
	for i, r := range set.Rules {
		ok := true
		for attr, pattern := range r.Match {
			value, present := attrs.Get(attr)
			ok = ok && present && referenceMatch(pattern, value)
		}
		for _, attr := range r.Key {
			_, present := attrs.Get(attr)
			ok = ok && present
		}
		if ok {
			out = append(out, i)
		}
	}
	return out
}

func TestApplicableAgreesWithReference(t *testing.T) {
	limit := &Limit{Rate: 1, Per: Duration(time.Second)}
	patterns := []string{"a", "a*", "*b", "a*b", "*"}
	// Rules over attribute names n0..n(count-1): few names use the bit masks,
	// many names the per-rule lookup.
	rulesOver := func(count int) *Set {
		set := &Set{}
		for i := range 40 {
			r := Rule{Name: fmt.Sprint("r", i), Key: []string{fmt.Sprint("n", i%count)}, Limit: limit}
			if i%3 != 0 {
				r.Match = map[string]string{fmt.Sprint("n", (i*7)%count): patterns[i%len(patterns)]}
			}
			set.Rules = append(set.Rules, r)
		}
		return set
	}
	rng := rand.New(rand.NewPCG(3, 4))
	values := []string{"", "a", "b", "ab", "ba", "aab"}
	for _, count := range []int{5, maxIndexedAttrs, 40} {
		set := rulesOver(count)
		c := Compile(set)
		for range 2000 {
			var attrs check.Attrs
			for n := range count {
				if rng.IntN(3) == 0 {
					attrs = append(attrs, check.Attr{Name: fmt.Sprint("n", n), Value: values[rng.IntN(len(values))]})
				}
			}
			got, want := c.Applicable(attrs, nil), referenceApplicable(set, attrs)
			if !slices.Equal(got, want) {
				t.Fatalf("%d names, attrs %v: Applicable = %v, want %v", count, attrs, got, want)
			}
		}
	}
}
