package loadgen

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicehq/sluice/api/check"
)

// scheduleTick is how often the open-loop scheduler releases the calls that
// have fallen due; finer than the OS timer resolution buys nothing.
const scheduleTick = time.Millisecond

// Run drives the targets for cfg.Duration (or until ctx ends), calling
// progress about once a second, and returns the report once every call in
// flight has been answered.
func Run(ctx context.Context, cfg Config, progress func(Progress)) (*Report, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	start := time.Now()
	g := &generator{cfg: cfg, rec: newRecorder(start)}
	runCtx, cancel := context.WithDeadline(ctx, start.Add(cfg.Duration))
	defer cancel()

	done := make(chan struct{})
	go func() {
		defer close(done)
		if cfg.Rate > 0 {
			g.openLoop(ctx, start)
		} else {
			g.closedLoop(runCtx)
		}
	}()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-done:
			return g.rec.report(cfg, time.Since(start)), nil
		case now := <-tick.C:
			if progress != nil {
				progress(g.rec.progress(now))
			}
		}
	}
}

// generator sends the calls of one run.
type generator struct {
	cfg Config
	rec *recorder
	seq atomic.Uint64 // numbers calls: picks their target and keys
}

// closedLoop keeps Concurrency callers busy until ctx ends.
func (g *generator) closedLoop(ctx context.Context) {
	var wg sync.WaitGroup
	for range g.cfg.Concurrency {
		wg.Go(func() {
			for ctx.Err() == nil {
				g.call(ctx, time.Now())
			}
		})
	}
	wg.Wait()
}

// openLoop releases calls on a fixed schedule, Rate per second from start
// until Duration later, to Concurrency callers; ctx only interrupts it. When
// every caller is busy, released calls wait in a queue, and their latency,
// counted from their release, shows it. The scheduler wakes every
// scheduleTick (in practice about a millisecond: Go timers cannot sleep
// finer), releasing every call due since its last wake-up; how late each
// call was released against its ideal time is the schedule lag, reported
// apart (Report.ScheduleLagMs) rather than folded into the latency of the
// system under test. A scheduler that was not run for a while (a loaded
// machine) catches up, so every scheduled call is sent, and the lag shows it.
func (g *generator) openLoop(ctx context.Context, start time.Time) {
	due := make(chan release, max(int(g.cfg.Rate), g.cfg.Concurrency))
	var wg sync.WaitGroup
	for range g.cfg.Concurrency {
		wg.Go(func() {
			for r := range due {
				g.rec.lag(r.at.Sub(r.due))
				g.call(ctx, r.at)
			}
		})
	}
	defer wg.Wait()
	defer close(due)
	interval := float64(time.Second) / g.cfg.Rate
	end := start.Add(g.cfg.Duration)
	tick := time.NewTicker(scheduleTick)
	defer tick.Stop()
	for released := 0; ; {
		now := time.Now()
		for {
			at := start.Add(time.Duration(float64(released) * interval))
			if !at.Before(end) {
				return
			}
			if at.After(now) {
				break
			}
			select {
			case due <- release{due: at, at: now}:
				released++
			case <-ctx.Done():
				return
			}
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return
		}
	}
}

// release is one open-loop call: its ideal time and when the scheduler
// released it.
type release struct{ due, at time.Time }

// call sends one call due at dueAt and records it. Calls still in flight
// when the run ends are allowed to finish, so every check sent is counted.
func (g *generator) call(runCtx context.Context, dueAt time.Time) {
	n := g.seq.Add(1) - 1
	reqs := make([]check.Request, g.cfg.Batch)
	for i := range reqs {
		key := int((n*uint64(g.cfg.Batch) + uint64(i)) % uint64(g.cfg.Keys))
		attrs := make(check.Attrs, 0, len(g.cfg.Attrs)+1)
		attrs = append(attrs, g.cfg.Attrs...)
		reqs[i] = check.Request{Attributes: append(attrs, check.Attr{Name: g.cfg.KeyAttr, Value: keyValue(g.cfg.KeyAttr, key)}), Cost: 1}
	}
	checker := g.cfg.Checkers[n%uint64(len(g.cfg.Checkers))]
	decisions, err := checker(context.WithoutCancel(runCtx), reqs)
	if err == nil && len(decisions) != len(reqs) {
		decisions, err = nil, errWrongAnswerCount
	}
	if err != nil {
		decisions = nil
	}
	g.rec.record(dueAt, time.Now(), len(reqs), decisions, err)
}
