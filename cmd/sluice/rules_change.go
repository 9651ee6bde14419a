package main

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/sluicehq/sluice/api/admin"
)

// printChange writes a rules dry run for people: one line per added,
// removed and changed rule, each changed field old → new with its
// direction, and with estimates the keys each changed rule would throttle
// at once.
func printChange(w io.Writer, c admin.RulesDryRun, estimates bool) {
	fmt.Fprintf(w, "compared with rules version %d; nothing applied\n", c.Version)
	if len(c.Added)+len(c.Removed)+len(c.Changed) == 0 {
		fmt.Fprintf(w, "no change (%d rules unchanged)\n", c.Unchanged)
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, name := range c.Added {
		fmt.Fprintf(tw, "+ %s\tadded\n", name)
	}
	for _, name := range c.Removed {
		fmt.Fprintf(tw, "- %s\tremoved\n", name)
	}
	for _, rc := range c.Changed {
		fmt.Fprintf(tw, "~ %s\tchanged\n", rc.Name)
		for _, f := range rc.Fields {
			fmt.Fprintf(tw, "    %s\t%s → %s\t%s\n", f.Field, compact(f.Old), compact(f.New), f.Direction)
		}
		if !estimates {
			continue
		}
		if t, ok := c.Throttled[rc.Name]; ok {
			more := ""
			if t.Truncated {
				more = " (first 1000 looked at)"
			}
			fmt.Fprintf(tw, "    throttled at once\t%d of %d active keys%s\t(%s)\n", t.AtOnce, t.ActiveKeys, more, t.Measure)
		} else {
			fmt.Fprintf(tw, "    throttled at once\tnot estimated: the key or kind changed\t\n")
		}
	}
	tw.Flush()
	fmt.Fprintf(w, "%d added, %d removed, %d changed, %d unchanged\n", len(c.Added), len(c.Removed), len(c.Changed), c.Unchanged)
}

// compact shows a field's value as compact JSON ("1s", 100, ["ip"]).
func compact(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}
