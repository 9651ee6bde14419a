package rules

import "strings"

// glob is a precompiled match pattern in which '*' matches any run of
// characters (including none and '/'); every other character is literal.
// Matching never allocates and never backtracks: the pattern's fixed parts
// are found left to right, each at its first possible position, which is
// enough because '*' can absorb whatever lies between them.
type glob struct {
	kind   globKind
	prefix string   // literal before the first '*' (the whole pattern for globExact)
	suffix string   // literal after the last '*'
	middle []string // literals between inner stars, in order (globGeneral only)
}

type globKind uint8

const (
	globExact   globKind = iota // "abc"
	globPrefix                  // "abc*", also "*" (empty prefix)
	globSuffix                  // "*abc"
	globGeneral                 // "a*b", "*a*", "a*b*c", ...
)

func compileGlob(pattern string) glob {
	first := strings.IndexByte(pattern, '*')
	if first < 0 {
		return glob{kind: globExact, prefix: pattern}
	}
	last := strings.LastIndexByte(pattern, '*')
	g := glob{prefix: pattern[:first], suffix: pattern[last+1:]}
	for part := range strings.SplitSeq(pattern[first+1:last+1], "*") {
		if part != "" { // runs of stars act as one
			g.middle = append(g.middle, part)
		}
	}
	switch {
	case len(g.middle) == 0 && g.suffix == "":
		g.kind = globPrefix
	case len(g.middle) == 0 && g.prefix == "":
		g.kind = globSuffix
	default:
		g.kind = globGeneral
	}
	return g
}

func (g *glob) match(s string) bool {
	switch g.kind {
	case globExact:
		return s == g.prefix
	case globPrefix:
		return strings.HasPrefix(s, g.prefix)
	case globSuffix:
		return strings.HasSuffix(s, g.suffix)
	}
	if len(s) < len(g.prefix)+len(g.suffix) || !strings.HasPrefix(s, g.prefix) || !strings.HasSuffix(s, g.suffix) {
		return false
	}
	rest := s[len(g.prefix) : len(s)-len(g.suffix)]
	for _, part := range g.middle {
		i := strings.Index(rest, part)
		if i < 0 {
			return false
		}
		rest = rest[i+len(part):]
	}
	return true
}
