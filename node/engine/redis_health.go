package engine

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// redisHealth is the breaker in front of Redis. One failed or timed-out call
// opens it: from then on decisions go straight to fallback buckets instead of
// piling up on a dead Redis, each waiting out --redis-timeout. A background
// probe closes it again as soon as Redis answers (SPEC §7).
type redisHealth struct {
	down     atomic.Bool
	probe    func(context.Context) error
	interval time.Duration
	timeout  time.Duration
	metrics  *RedisMetrics
	logger   *slog.Logger
	ctx      context.Context // ends when the engine closes
	// onDown runs when the breaker opens, before any decision sees it open:
	// the engine empties its fallback buckets there.
	onDown  func()
	opening sync.Mutex // serializes opening, so onDown runs once per episode
}

// probeInterval is how often a node in fallback asks Redis whether it is back.
const probeInterval = 100 * time.Millisecond

func (h *redisHealth) isDown() bool { return h.down.Load() }

// failed opens the breaker after a failed call and starts probing.
func (h *redisHealth) failed(err error) {
	h.opening.Lock()
	defer h.opening.Unlock()
	if h.down.Load() {
		return
	}
	if h.onDown != nil {
		h.onDown()
	}
	h.down.Store(true)
	h.metrics.setFallback(true)
	h.logger.Warn("redis unreachable; deciding in fallback mode from the leased share", "err", err)
	go h.probeUntilUp()
}

func (h *redisHealth) probeUntilUp() {
	t := time.NewTicker(h.interval)
	defer t.Stop()
	since := time.Now()
	for {
		select {
		case <-h.ctx.Done():
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(h.ctx, h.timeout)
		start := time.Now()
		err := h.probe(ctx)
		cancel()
		h.metrics.observeTrip("probe", 1, 0, err, time.Since(start))
		if err == nil {
			h.down.Store(false)
			h.metrics.setFallback(false)
			h.logger.Info("redis reachable again; back to global mode", "fallback_for", time.Since(since).Round(time.Millisecond))
			return
		}
	}
}
