package rules

import (
	"math/rand/v2"
	"strings"
	"testing"
)

func TestGlob(t *testing.T) {
	cases := []struct {
		pattern, value string
		kind           globKind
		want           bool
	}{
		{"/login", "/login", globExact, true},
		{"/login", "/login/", globExact, false},
		{"/login", "/logi", globExact, false},
		{"", "", globExact, true},
		{"", "x", globExact, false},
		{"?", "a", globExact, false}, // only '*' is special
		{"[a]", "[a]", globExact, true},
		{"*", "", globPrefix, true},
		{"*", "anything/at/all", globPrefix, true},
		{"**", "x", globPrefix, true},
		{"/api/*", "/api/", globPrefix, true},
		{"/api/*", "/api/orders/7", globPrefix, true},
		{"/api/*", "/api", globPrefix, false},
		{"/api/*", "/apix/", globPrefix, false},
		{"*.png", "/img/a.png", globSuffix, true},
		{"*.png", ".png", globSuffix, true},
		{"*.png", "/img/a.png/", globSuffix, false},
		{"/a/*/b", "/a//b", globGeneral, true},
		{"/a/*/b", "/a/x/y/b", globGeneral, true},
		{"/a/*/b", "/a/b", globGeneral, false}, // prefix and suffix may not overlap
		{"ab*ba", "aba", globGeneral, false},
		{"ab*ba", "abba", globGeneral, true},
		{"*a*", "bab", globGeneral, true},
		{"*a*", "bbb", globGeneral, false},
		{"*a*b*", "xbxa", globGeneral, false}, // order matters
		{"*a*b*", "xaxb", globGeneral, true},
		{"a*b*c", "abc", globGeneral, true},
		{"a*b*c", "acbc", globGeneral, true},
		{"a*b*c", "acb", globGeneral, false},
		{"a*aa*a", "aaaa", globGeneral, true},
		{"a*aa*a", "aaa", globGeneral, false},
		{"*ab*ab*", "abab", globGeneral, true},
		{"*ab*ab*", "aabb", globGeneral, false},
		{"a**b", "ab", globGeneral, true},
	}
	for _, tc := range cases {
		g := compileGlob(tc.pattern)
		if g.kind != tc.kind {
			t.Errorf("compileGlob(%q).kind = %d, want %d", tc.pattern, g.kind, tc.kind)
		}
		if got := g.match(tc.value); got != tc.want {
			t.Errorf("glob %q match %q = %v, want %v", tc.pattern, tc.value, got, tc.want)
		}
	}
}

// referenceMatch is the textbook dynamic-programming glob matcher.
func referenceMatch(pattern, s string) bool {
	// prev[j]: pattern[:i] matches s[:j]
	prev := make([]bool, len(s)+1)
	prev[0] = true
	for i := 0; i < len(pattern); i++ {
		cur := make([]bool, len(s)+1)
		if pattern[i] == '*' {
			cur[0] = prev[0]
		}
		for j := 1; j <= len(s); j++ {
			if pattern[i] == '*' {
				cur[j] = prev[j] || cur[j-1]
			} else {
				cur[j] = prev[j-1] && pattern[i] == s[j-1]
			}
		}
		prev = cur
	}
	return prev[len(s)]
}

func TestGlobAgreesWithReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	random := func(alphabet string, n int) string {
		var b strings.Builder
		for range rng.IntN(n + 1) {
			b.WriteByte(alphabet[rng.IntN(len(alphabet))])
		}
		return b.String()
	}
	for range 50000 {
		pattern, value := random("ab*", 7), random("ab", 9)
		g := compileGlob(pattern)
		if got, want := g.match(value), referenceMatch(pattern, value); got != want {
			t.Fatalf("glob %q match %q = %v, reference says %v", pattern, value, got, want)
		}
	}
}

func TestGlobMatchDoesNotAllocate(t *testing.T) {
	g := compileGlob("/api/*/orders/*/items*")
	value := "/api/v1/orders/42/items/9"
	allocs := testing.AllocsPerRun(100, func() {
		if !g.match(value) {
			t.Fatal("no match")
		}
	})
	if allocs != 0 {
		t.Errorf("match allocates %v times", allocs)
	}
}
