package engine

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// RedisMetrics count the global path's Redis traffic (SPEC §9).
type RedisMetrics struct {
	requests *prometheus.CounterVec
	// calls counts commands by kind, trips the round trips that carried
	// them: a pipeline of settles is many calls in one trip.
	calls *prometheus.CounterVec
	trips prometheus.Counter
	// scripts counts script runs: one renew_many run carries many calls.
	scripts  *prometheus.CounterVec
	duration prometheus.Histogram
	refills  prometheus.Counter
	fallback prometheus.Gauge
	// timeout is --redis-timeout, so alerts can compare latency with it.
	timeout prometheus.Gauge
}

// NewRedisMetrics registers the Redis metrics with reg.
func NewRedisMetrics(reg prometheus.Registerer) *RedisMetrics {
	m := &RedisMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "sluice", Name: "redis_requests_total",
			Help: "Calls to the Redis token bucket by op (acquire, settle, probe) and result (ok, error, timeout).",
		}, []string{"op", "result"}),
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "sluice", Name: "redis_calls_total",
			Help: "Commands sent to Redis by kind (acquire: a slice renewal; settle: a grant handed back; quota_acquire, quota_settle, probe), counting each call of a pipeline.",
		}, []string{"kind"}),
		trips: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "sluice", Name: "redis_round_trips_total",
			Help: "Round trips to Redis; a pipeline of calls is one.",
		}),
		scripts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "sluice", Name: "redis_script_runs_total",
			Help: "Script runs (EVALSHA) by kind, as in sluice_redis_calls_total; one run renews or settles up to 128 keys.",
		}, []string{"kind"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "sluice", Name: "redis_request_duration_seconds",
			Help:    "Round-trip time of calls to Redis.",
			Buckets: []float64{1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25},
		}),
		refills: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "sluice", Name: "slice_refills_total",
			Help: "Slices granted by the global bucket.",
		}),
		fallback: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "sluice", Name: "fallback_active",
			Help: "1 while Redis is unreachable and this node decides from its leased share.",
		}),
		timeout: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "sluice", Name: "redis_timeout_seconds",
			Help: "The bound on every Redis call (--redis-timeout); a slower call counts as Redis down.",
		}),
	}
	reg.MustRegister(m.requests, m.calls, m.trips, m.scripts, m.duration, m.refills, m.fallback, m.timeout)
	return m
}

// observe records one round trip carrying one script run of op.
func (m *RedisMetrics) observe(op string, err error, took time.Duration) {
	m.observeTrip(op, 1, 1, err, took)
}

// observeTrip records one round trip carrying n calls of op in scripts runs.
func (m *RedisMetrics) observeTrip(op string, n, scripts int, err error, took time.Duration) {
	if m == nil {
		return
	}
	result := "ok"
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		result = "timeout"
	case err != nil:
		result = "error"
	}
	m.requests.WithLabelValues(op, result).Add(float64(n))
	m.calls.WithLabelValues(op).Add(float64(n))
	if scripts > 0 {
		m.scripts.WithLabelValues(op).Add(float64(scripts))
	}
	m.trips.Inc()
	m.duration.Observe(took.Seconds())
}

func (m *RedisMetrics) refilled() {
	if m != nil {
		m.refills.Inc()
	}
}

func (m *RedisMetrics) setFallback(on bool) {
	if m == nil {
		return
	}
	if on {
		m.fallback.Set(1)
	} else {
		m.fallback.Set(0)
	}
}

func (m *RedisMetrics) setTimeout(d time.Duration) {
	if m != nil {
		m.timeout.Set(d.Seconds())
	}
}
