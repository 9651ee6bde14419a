package rules

import (
	"strconv"
	"strings"
)

// indexPath names element i of the array at base: "rules[2]".
func indexPath(base string, i int) string {
	return base + "[" + strconv.Itoa(i) + "]"
}

// fieldPath names member name of the object at base: "rules[0].limit", or
// `rules[0].match["x-forwarded-for"]` when the name is not a plain word.
func fieldPath(base, name string) string {
	if name == "" || strings.IndexFunc(name, notPathRune) >= 0 {
		return base + "[" + strconv.Quote(name) + "]"
	}
	if base == "" {
		return name
	}
	return base + "." + name
}

func notPathRune(r rune) bool {
	return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_')
}
