package lua

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// Dial makes a Redis client from the --redis flag value: "redis://[user:pass@]host:port"
// (or rediss:// for TLS), "host:port", or a comma-separated list of Redis Cluster seeds.
// mode is "single", "cluster" or "auto": a list means cluster, and a single address is
// asked INFO cluster, which is the only time Dial talks to Redis (bounded by ctx). In the
// explicit modes Redis may be down at startup; the client connects when first used.
//
// The client is tuned for a caller that would rather fall back than wait: every step
// (dial, pool wait, read, write) is bounded by timeout, and a standalone client retries
// nothing, since a retry could only start after the budget is gone and a retried acquire
// that had in fact run would strand its grant until it expires. A cluster client must
// follow MOVED/ASK redirects and try another node when one fails (that is how it finds a
// promoted replica), so it does, at most maxRedirects times; callers bound each call with
// a context deadline, which go-redis honours throughout.
func Dial(ctx context.Context, spec, mode string, timeout time.Duration, opts ...DialOption) (redis.UniversalClient, error) {
	if timeout <= 0 {
		return nil, fmt.Errorf("redis timeout must be > 0, got %v", timeout)
	}
	seeds, err := parseSeeds(spec)
	if err != nil {
		return nil, err
	}
	var o dialOptions
	for _, opt := range opts {
		opt(&o)
	}
	if err := o.applyTLS(seeds); err != nil {
		return nil, err
	}
	switch mode {
	case "single":
		if len(seeds) > 1 {
			return nil, fmt.Errorf("redis mode single takes one address, got %d", len(seeds))
		}
		return redis.NewClient(singleOptions(seeds[0], timeout)), nil
	case "cluster":
		return newCluster(seeds, timeout)
	case "auto":
		if len(seeds) > 1 {
			return newCluster(seeds, timeout)
		}
		return dialAuto(ctx, seeds, timeout)
	default:
		return nil, fmt.Errorf("redis mode must be cluster, single or auto, got %q", mode)
	}
}

// DialOption adjusts how Dial connects.
type DialOption func(*dialOptions)

type dialOptions struct {
	roots *x509.CertPool
}

// WithRootCAs verifies the servers of rediss:// addresses against roots
// (--redis-ca-cert) instead of the system's CAs.
func WithRootCAs(roots *x509.CertPool) DialOption {
	return func(o *dialOptions) { o.roots = roots }
}

// applyTLS sets the root CAs on every TLS seed; roots without a rediss://
// address are a mistake the operator should hear about.
func (o dialOptions) applyTLS(seeds []*redis.Options) error {
	if o.roots == nil {
		return nil
	}
	for _, s := range seeds {
		if s.TLSConfig == nil {
			return fmt.Errorf("a Redis CA certificate is set but %s is not a rediss:// address", s.Addr)
		}
		s.TLSConfig.RootCAs = o.roots
	}
	return nil
}

// ErrModeUnknown: in auto mode, the one address did not say whether it is part of a
// Redis Cluster (it is down, or not answering yet). NewPendingLimiter asks again later.
var ErrModeUnknown = errors.New("redis mode auto: mode unknown")

// maxRedirects is how many redirects or node failures one cluster call may get past: one
// for a moved slot, one more for a slot being migrated at the same time.
const maxRedirects = 2

// autoProbeTimeout bounds the start-up INFO cluster question. It is not the
// per-decision --redis-timeout: a node starting on a busy machine should not
// fail to start because one round trip took 60 ms.
const autoProbeTimeout = 2 * time.Second

// dialAuto asks the one address whether it is part of a Redis Cluster.
func dialAuto(ctx context.Context, seeds []*redis.Options, timeout time.Duration) (redis.UniversalClient, error) {
	probe := redis.NewClient(singleOptions(seeds[0], max(timeout, autoProbeTimeout)))
	info, err := probe.Info(ctx, "cluster").Result()
	probe.Close()
	if err != nil {
		return nil, fmt.Errorf("%w: cannot ask %s INFO cluster (--redis-mode single or --redis-mode cluster skips the question): %w", ErrModeUnknown, seeds[0].Addr, err)
	}
	if !strings.Contains(info, "cluster_enabled:1") {
		return redis.NewClient(singleOptions(seeds[0], timeout)), nil
	}
	return newCluster(seeds, timeout)
}

// parseSeeds turns the flag value into one set of connection options per address.
func parseSeeds(spec string) ([]*redis.Options, error) {
	var seeds []*redis.Options
	for _, s := range strings.Split(spec, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			return nil, fmt.Errorf("redis address list %q has an empty entry", spec)
		}
		if !strings.Contains(s, "://") {
			s = "redis://" + s
		}
		opt, err := redis.ParseURL(s)
		if err != nil {
			return nil, fmt.Errorf("redis address %q: %w", s, err)
		}
		seeds = append(seeds, opt)
	}
	return seeds, nil
}

// singleOptions keeps the address, credentials, database and TLS of a parsed URL and sets
// everything else for low latency.
func singleOptions(seed *redis.Options, timeout time.Duration) *redis.Options {
	return &redis.Options{
		Addr:      seed.Addr,
		Username:  seed.Username,
		Password:  seed.Password,
		DB:        seed.DB,
		TLSConfig: seed.TLSConfig,

		DialTimeout:           timeout,
		DialerRetries:         1,
		ReadTimeout:           timeout,
		WriteTimeout:          timeout,
		ContextTimeoutEnabled: true,
		PoolTimeout:           timeout,
		// Warm connections spare the first calls after a quiet spell a dial.
		MinIdleConns: minIdleConns(seed.TLSConfig),
		MaxRetries:   -1,

		DisableIdentity:          true,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	}
}

// minIdleConns is how many connections the pool keeps warm. Not over TLS:
// a connection go-redis dials in the background and leaves unused holds the
// server's unread post-handshake records, and its first use then times out
// (measured against redis-server 7 with TLS 1.3: every call failed until
// the pool stopped pre-dialing), which would pin a node in fallback.
func minIdleConns(tlsConfig *tls.Config) int {
	if tlsConfig != nil {
		return 0
	}
	return runtime.GOMAXPROCS(0)
}

func newCluster(seeds []*redis.Options, timeout time.Duration) (redis.UniversalClient, error) {
	addrs := make([]string, len(seeds))
	for i, s := range seeds {
		if s.DB != 0 {
			return nil, errors.New("redis cluster has only database 0; drop the /db from the address")
		}
		addrs[i] = s.Addr
	}
	// Credentials and TLS come from the first seed; a cluster's nodes share
	// them, except the server name, which each node's host gives (the
	// client meets nodes beyond the seeds).
	tlsConfig := seeds[0].TLSConfig
	if tlsConfig != nil {
		tlsConfig = tlsConfig.Clone()
		tlsConfig.ServerName = ""
	}
	return redis.NewClusterClient(&redis.ClusterOptions{
		Addrs:     addrs,
		Username:  seeds[0].Username,
		Password:  seeds[0].Password,
		TLSConfig: tlsConfig,

		MaxRedirects:          maxRedirects,
		MaxRetries:            -1,
		DialTimeout:           timeout,
		DialerRetries:         1,
		ReadTimeout:           timeout,
		WriteTimeout:          timeout,
		ContextTimeoutEnabled: true,
		PoolTimeout:           timeout,
		MinIdleConns:          minIdleConns(tlsConfig),

		DisableIdentity:          true,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	}), nil
}
