package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/sluicehq/sluice/api/admin"
	"github.com/sluicehq/sluice/api/top"
)

// clearScreen moves the cursor home and clears the terminal, as top does
// before each refresh.
const clearScreen = "\x1b[H\x1b[2J"

// runTop implements `sluice top`: each rule's admit and deny rates and its
// top denied keys over the cluster, refreshed every --interval until
// interrupted, or printed once with --once.
func runTop(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("top", stdout, stderr)
	var f adminFlags
	f.register(fs)
	q := top.Query{By: top.ByDenied}
	fs.StringVar(&q.Rule, "rule", "", "show one rule [every rule]")
	fs.StringVar(&q.Window, "window", "10s", "10s or 1m: the window counts and rates cover")
	fs.IntVar(&q.K, "k", 10, fmt.Sprintf("top denied keys per rule (1-%d)", top.MaxK))
	once := fs.Bool("once", false, "print once and exit (for scripts)")
	interval := fs.Duration("interval", 2*time.Second, "time between refreshes")
	if _, err := f.parse(fs, args); err != nil {
		return flagExit(err)
	}
	if msg := topFlagProblem(q, *interval); msg != "" {
		fmt.Fprintln(stderr, "sluice top: "+msg)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	c := f.client()
	for {
		callCtx, cancel := context.WithTimeout(ctx, adminTimeout)
		t, err := c.Top(callCtx, q)
		cancel()
		switch {
		case *once && err != nil:
			return adminFailed(stderr, "top", err)
		case *once:
			printTop(stdout, t, time.Now())
			return 0
		case ctx.Err() != nil:
			return 0
		}
		fmt.Fprint(stdout, clearScreen)
		if err != nil {
			fmt.Fprintf(stdout, "sluice top: %v (retrying every %s)\n", err, *interval)
		} else {
			printTop(stdout, t, time.Now())
		}
		select {
		case <-ctx.Done():
			return 0
		case <-time.After(*interval):
		}
	}
}

// topFlagProblem says what is wrong with the flags, "" if nothing.
func topFlagProblem(q top.Query, interval time.Duration) string {
	switch _, ok := top.Windows[q.Window]; {
	case !ok:
		return "--window must be 10s or 1m"
	case q.K < 1 || q.K > top.MaxK:
		return fmt.Sprintf("--k must be from 1 to %d", top.MaxK)
	case interval < 100*time.Millisecond:
		return "--interval must be at least 100ms"
	}
	return ""
}

// printTop writes one screen: who answered, each rule's rates, then each
// rule's top denied keys.
func printTop(w io.Writer, t admin.Top, now time.Time) {
	secs := top.Windows[t.Window].Seconds()
	fmt.Fprintf(w, "sluice top  %s  window %s  nodes %s", now.Format(time.TimeOnly), t.Window, strings.Join(t.Nodes, ","))
	if len(t.Missing) > 0 {
		fmt.Fprintf(w, "  MISSING %s", strings.Join(t.Missing, ","))
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RULE\tADMITTED/s\tDENIED/s\tDENIED %")
	for _, r := range t.Rules {
		fmt.Fprintf(tw, "%s\t%.2f\t%.2f\t%s\n", r.Rule, float64(r.Admitted)/secs, float64(r.Denied)/secs, percent(r.Denied, r.Admitted+r.Denied))
	}
	tw.Flush()
	for _, r := range t.Rules {
		if len(r.Keys) == 0 {
			continue
		}
		fmt.Fprintf(w, "\n%s: top denied keys\n", r.Rule)
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "KEY\tDENIED\t±\tADMITTED\tNODES")
		for _, k := range r.Keys {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\n", orNone(k.Key), k.Denied, k.Error, k.Admitted, strings.Join(k.Nodes, ","))
		}
		tw.Flush()
	}
}

func percent(part, whole int64) string {
	if whole == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f", 100*float64(part)/float64(whole))
}
