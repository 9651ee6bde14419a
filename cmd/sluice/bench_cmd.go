package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/sluicehq/sluice/api/check"
	"github.com/sluicehq/sluice/api/client"
	"github.com/sluicehq/sluice/cmd/sluice/loadgen"
	"github.com/sluicehq/sluice/fsm/rules"
)

// benchExitLimitBroken is bench's exit status when a bucket admitted more
// than its rule allows, so scripts can gate on it.
const benchExitLimitBroken = 3

type benchFlags struct {
	targets, keyAttr, token, out string
	attrs                        []string
	rate                         float64
	concurrency, keys, batch     int
	duration                     time.Duration
	tls                          clientTLSFlags
	tlsOption                    client.Option
}

func (f *benchFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.targets, "target", "http://127.0.0.1:8000", "node HTTP address, or a comma-separated list (calls go round-robin)")
	fs.Float64Var(&f.rate, "rate", 0, "open loop: calls per second on a fixed schedule; 0 = closed loop")
	fs.IntVar(&f.concurrency, "concurrency", 32, "callers: all busy in closed loop, the most in flight in open loop")
	fs.DurationVar(&f.duration, "duration", 10*time.Second, "how long to send")
	fs.IntVar(&f.keys, "keys", 100, "distinct values of --key-attr, round-robin; 1 = one hot key")
	fs.StringVar(&f.keyAttr, "key-attr", "ip", "attribute that takes a different value per key")
	fs.Func("attr", "fixed attribute name=value, repeatable [route=/api/bench, method=GET]", func(s string) error {
		if name, _, ok := strings.Cut(s, "="); !ok || name == "" {
			return fmt.Errorf("%q is not name=value", s)
		}
		f.attrs = append(f.attrs, s)
		return nil
	})
	fs.IntVar(&f.batch, "batch", 1, "checks per call; above 1 uses POST /v1/check/batch (at most 1000)")
	fs.StringVar(&f.token, "token", "", "admin token, to read the rules the report compares with")
	fs.StringVar(&f.out, "out", "", "write PATH.json and a chart PATH.html")
	f.tls.register(fs)
}

// runBench is `sluice bench` (SPEC §9): load, a live progress line on
// stderr, then the final table. Exit 0, 1 on error, 3 if the limit broke.
func runBench(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("bench", stdout, stderr)
	var f benchFlags
	f.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return flagExit(err)
	}
	cfg, err := f.config()
	if err != nil {
		fmt.Fprintf(stderr, "sluice bench: %v\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg.Rules, err = readRules(ctx, cfg.Targets[0], f.token, f.tlsOption)
	if err != nil {
		fmt.Fprintf(stderr, "sluice bench: admitted counts will not be compared with the limits: %v\n", err)
	}
	rep, err := loadgen.Run(ctx, cfg, progressPrinter(stderr))
	if err != nil {
		fmt.Fprintf(stderr, "sluice bench: %v\n", err)
		return 1
	}
	rep.WriteTable(stdout)
	if f.out != "" {
		if err := writeBenchOutput(f.out, rep, stdout); err != nil {
			fmt.Fprintf(stderr, "sluice bench: --out: %v\n", err)
			return 1
		}
	}
	if rep.LimitHeld != nil && !*rep.LimitHeld {
		return benchExitLimitBroken
	}
	return 0
}

// config turns the flags into a load run with one client per target.
func (f *benchFlags) config() (loadgen.Config, error) {
	cfg := loadgen.Config{
		Rate: f.rate, Concurrency: f.concurrency, Duration: f.duration,
		Keys: f.keys, KeyAttr: f.keyAttr, Batch: f.batch,
	}
	attrs := f.attrs
	if len(attrs) == 0 {
		attrs = []string{"route=/api/bench", "method=GET"}
	}
	for _, a := range attrs {
		name, value, _ := strings.Cut(a, "=")
		cfg.Attrs = append(cfg.Attrs, check.Attr{Name: name, Value: value})
	}
	var err error
	if f.tlsOption, err = f.tls.option(); err != nil {
		return cfg, err
	}
	httpClient := &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{MaxIdleConns: f.concurrency, MaxIdleConnsPerHost: f.concurrency, IdleConnTimeout: 90 * time.Second},
	}
	for _, t := range splitList(f.targets) {
		c := client.New(t, client.WithToken(f.token), client.WithHTTPClient(httpClient), f.tlsOption)
		cfg.Targets = append(cfg.Targets, t)
		cfg.Checkers = append(cfg.Checkers, checkerFor(c, f.batch))
	}
	return cfg, cfg.Validate()
}

func checkerFor(c *client.Client, batch int) loadgen.Checker {
	if batch > 1 {
		return c.DecideBatch
	}
	return func(ctx context.Context, reqs []check.Request) ([]check.Decision, error) {
		d, err := c.Decide(ctx, reqs[0])
		return []check.Decision{d}, err
	}
}

// readRules fetches the cluster's rules, which the report needs to say what
// each bucket was allowed to admit.
func readRules(ctx context.Context, target, token string, tlsOption client.Option) (*rules.Set, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	doc, err := client.New(target, client.WithToken(token), tlsOption).Rules(ctx)
	if err != nil {
		return nil, err
	}
	return rules.Parse([]byte(`{"rules":` + string(doc.Rules) + `}`))
}

// progressPrinter shows one line per second: rewritten in place on a
// terminal, appended otherwise (logs, CI).
func progressPrinter(w io.Writer) func(loadgen.Progress) {
	end := "\n"
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			end = "\r"
		}
	}
	return func(p loadgen.Progress) {
		fmt.Fprintf(w, "%5.0fs  sent %d  allowed %d  denied %d  errors %d  | last second: %d/s, %d allowed/s, p99 %.2fms   %s",
			p.Elapsed.Seconds(), p.Total.Sent, p.Total.Allowed, p.Total.Denied, p.Total.Errors,
			p.Last.Sent, p.Last.Allowed, float64(p.LastP99.Microseconds())/1000, end)
	}
}

// writeBenchOutput writes base.json and base.html (an extension on path is dropped).
func writeBenchOutput(path string, rep *loadgen.Report, stdout io.Writer) error {
	base := strings.TrimSuffix(strings.TrimSuffix(path, ".json"), ".html")
	data, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(base+".json", append(data, '\n'), 0o644); err != nil {
		return err
	}
	page, err := os.Create(base + ".html")
	if err != nil {
		return err
	}
	if err := rep.WriteHTML(page); err != nil {
		page.Close()
		return err
	}
	if err := page.Close(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s.json and %s.html\n", base, base)
	return nil
}
