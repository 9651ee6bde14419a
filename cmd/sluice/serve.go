package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/sluicehq/sluice/node/engine"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"

	"github.com/sluicehq/sluice/api"
	"github.com/sluicehq/sluice/api/admin"
	"github.com/sluicehq/sluice/api/clientip"
	"github.com/sluicehq/sluice/api/top"
	"github.com/sluicehq/sluice/fsm/rules"
	"github.com/sluicehq/sluice/lua"
	"github.com/sluicehq/sluice/node"
	"github.com/sluicehq/sluice/transport"
)

// defaultRulesFile is used when --rules is not given and the file exists
// (make run from the repository root), so a bare `sluice serve` limits /ping.
const defaultRulesFile = "testdata/rules.json"

type serveFlags struct {
	nodeID, dataDir             string
	httpAddr, httpAdvertise     string
	raftAddr, raftAdvertise     string
	join, rulesFile, adminToken string
	logLevel, logFormat         string
	redis, redisMode            string
	redisTimeout, sliceTTL      time.Duration
	sliceMaxTTL                 time.Duration
	leaseTTL, maxClockSkew      time.Duration
	grpcAddr, trustedProxies    string
	tls                         tlsFlags
	insecure                    bool
	voters                      int
	voterGrace, removeAfter     time.Duration
}

func (f *serveFlags) register(fs *flag.FlagSet) {
	host, _ := os.Hostname()
	fs.StringVar(&f.nodeID, "node-id", host, "unique node id")
	fs.StringVar(&f.dataDir, "data-dir", "./sluice-data", "directory for raft state")
	fs.StringVar(&f.httpAddr, "http-addr", ":8000", "HTTP listen address (check API, admin, metrics)")
	fs.StringVar(&f.httpAdvertise, "http-advertise", "", "HTTP address other nodes use to reach this one [derived]")
	fs.StringVar(&f.raftAddr, "raft-addr", "127.0.0.1:7000", "raft listen address")
	fs.StringVar(&f.raftAdvertise, "raft-advertise", "", "raft address other nodes use [raft-addr]")
	fs.StringVar(&f.join, "join", "", "comma-separated HTTP addresses of existing members; this node's own --http-advertise is skipped, and as the first entry makes it the seed that bootstraps (without raft state, only once a majority of the listed nodes, itself included, answer that they belong to no cluster)")
	fs.StringVar(&f.rulesFile, "rules", "", "rules applied when this node bootstraps a new cluster [testdata/rules.json when present]")
	fs.StringVar(&f.adminToken, "admin-token", "", "bearer token for the admin API and node-to-node calls")
	fs.StringVar(&f.grpcAddr, "grpc-addr", "", "Envoy rate limit service (gRPC) listen address, e.g. :8081 [off]")
	fs.StringVar(&f.trustedProxies, "trusted-proxies", "127.0.0.0/8,::1/128", "CIDRs or addresses of the proxies allowed to say who the client is (X-Forwarded-For, X-Real-IP, Envoy's remote_address); everyone else is their TCP peer")
	fs.StringVar(&f.redis, "redis", "", "redis://[user:pass@]host:port, host:port, or comma-separated Redis Cluster seeds; none = local mode")
	fs.StringVar(&f.redisMode, "redis-mode", "auto", "cluster, single or auto (a list means cluster; one address is asked INFO cluster)")
	fs.DurationVar(&f.redisTimeout, "redis-timeout", 50*time.Millisecond, "bound on every Redis call; slower means fallback")
	fs.DurationVar(&f.sliceTTL, "slice-ttl", 250*time.Millisecond, "how long a node may spend one slice of the global bucket")
	fs.DurationVar(&f.sliceMaxTTL, "slice-max-ttl", engine.DefaultRoomyTTL, "how long a node may spend a larger slice granted while the key's global bucket stays at least half full; <= --slice-ttl: never")
	fs.DurationVar(&f.leaseTTL, "lease-ttl", node.DefaultLeaseTTL, "lifetime of a node's leased share of each rule (fallback mode); renewed three times per TTL")
	fs.DurationVar(&f.maxClockSkew, "max-clock-skew", node.DefaultMaxClockSkew, "largest wall-clock error assumed on any node; leases are trusted only within it")
	f.tls.register(fs)
	fs.BoolVar(&f.insecure, "insecure", false, "start even though the raft port is reachable beyond loopback without --admin-token or node TLS")
	fs.IntVar(&f.voters, "voters", 0, "size of the voting core: 1, 3, 5 or 7; 0 = 3 below five members, then 5 (the others are non-voters)")
	fs.DurationVar(&f.voterGrace, "autopilot-voter-grace", node.DefaultVoterGrace, "a voter unheard this long gives its vote to a caught-up non-voter")
	fs.DurationVar(&f.removeAfter, "autopilot-remove-after", node.DefaultRemoveAfter, "a member unheard this long is removed from the cluster")
	fs.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&f.logFormat, "log-format", "text", "text or json")
}

func runServe(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("serve", stdout, stderr)
	var f serveFlags
	f.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return flagExit(err)
	}
	logger, err := newLogger(stderr, f.logLevel, f.logFormat)
	if err != nil {
		fmt.Fprintf(stderr, "sluice serve: %v\n", err)
		return 2
	}
	routeLibraryLogs(logger)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := serve(ctx, f, logger); err != nil {
		logger.Error("sluice serve failed", "err", err)
		return 1
	}
	return 0
}

// A graceful shutdown takes at most shutdownTimeout, of which handing the
// vote over takes at most leaveTimeout (a container's termination grace
// period must cover it: deploy/kubernetes/sluice.yaml).
const (
	shutdownTimeout = 10 * time.Second
	leaveTimeout    = 5 * time.Second
)

// serve runs a node until ctx ends (SIGTERM or SIGINT in production), then
// shuts down gracefully: stop accepting, finish in-flight requests, settle
// slices back to Redis, leave raft.
func serve(ctx context.Context, f serveFlags, logger *slog.Logger) error {
	bootstrapRules, err := loadBootstrapRules(f.rulesFile)
	if err != nil {
		return err
	}
	trustedProxies, err := clientip.Parse(f.trustedProxies)
	if err != nil {
		return fmt.Errorf("--trusted-proxies: %w", err)
	}
	certs, err := f.tls.load()
	if err != nil {
		return err
	}
	if err := requireAuthBeyondLoopback(f, certs); err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		collectors.NewBuildInfoCollector())
	engineOpts := []engine.Option{engine.WithMetrics(engine.NewMetrics(reg)), engine.WithLogger(logger), engine.WithHitters()}
	var n *node.Node
	redisMode := func() string { return "none" }
	if f.redis != "" {
		var dialOpts []lua.DialOption
		if certs.redisRoots != nil {
			dialOpts = append(dialOpts, lua.WithRootCAs(certs.redisRoots))
		}
		limiter, err := dialRedis(ctx, f, logger, dialOpts...)
		if err != nil {
			return fmt.Errorf("--redis: %w", err)
		}
		defer limiter.Close()
		redisMode = limiter.Mode
		engineOpts = append(engineOpts, engine.WithGlobal(engine.GlobalConfig{
			Limiter:      limiter,
			SliceTTL:     f.sliceTTL,
			RoomyTTL:     f.sliceMaxTTL,
			RedisTimeout: f.redisTimeout,
			Nodes:        func() int { return max(n.Stats().Peers, 1) },
			Share:        func(rule string) float64 { return n.Share(rule) },
			Withheld:     func(rule string) float64 { return n.Withheld(rule) },
			Metrics:      engine.NewRedisMetrics(reg),
		}))
	} else {
		// Local mode counts quotas on this node; keep them across restarts.
		store, err := openQuotaStore(f.dataDir)
		if err != nil {
			return err
		}
		engineOpts = append(engineOpts, engine.WithQuotaStore(store), engine.WithLeases(engine.LeaseConfig{
			Share:   func(rule string) float64 { return n.Share(rule) },
			Members: func() int { return n.MemberCount() },
		}))
	}
	eng := engine.New(engineOpts...)

	httpLn, err := net.Listen("tcp", f.httpAddr)
	if err != nil {
		return fmt.Errorf("http listen: %w", err)
	}
	grpcSvc, err := listenGRPC(f.grpcAddr, eng, trustedProxies)
	if err != nil {
		_ = httpLn.Close()
		return err
	}
	httpAdvertise := advertisedHTTP(f, httpLn.Addr())
	join, seed := joinTargets(f.join, httpAdvertise)
	cfg := node.Config{
		ID:             f.nodeID,
		DataDir:        f.dataDir,
		RaftAddr:       f.raftAddr,
		RaftAdvertise:  f.raftAdvertise,
		HTTPAdvertise:  httpAdvertise,
		Join:           join,
		Seed:           seed,
		BootstrapRules: bootstrapRules,
		AdminToken:     f.adminToken,
		NodeTLS:        certs.node,
		HTTPS:          certs.http != nil,
		Logger:         logger,
		LeaseTTL:       f.leaseTTL,
		MaxClockSkew:   f.maxClockSkew,
		Voters:         f.voters,
		VoterGrace:     f.voterGrace,
		RemoveAfter:    f.removeAfter,
		Demand:         eng.Demand,
		Fallback:       eng.InFallback,
		OnClustered:    eng.SetClustered,
		OnRules: func(version uint64, doc []byte) {
			set, err := rules.Parse(doc)
			if err != nil {
				logger.Error("replicated rules do not parse; keeping the previous rules", "version", version, "err", err)
				return
			}
			eng.SetRules(version, set)
			logger.Info("rules installed", "version", version, "rules", len(set.Rules))
		},
	}
	n, err = node.New(cfg)
	if err != nil {
		return err
	}
	node.RegisterRaftMetrics(reg, n)
	node.RegisterLeaseMetrics(reg, n)
	nodeInfo := func() admin.NodeInfo {
		return admin.NodeInfo{ID: f.nodeID, Mode: string(eng.Mode()), Redis: redisMode(), RulesVersion: eng.RulesVersion()}
	}
	node.RegisterRulesMetrics(reg, n)
	srv, err := api.NewServer(api.Config{Engine: eng, Admin: n, Usage: eng, Estimator: eng, NodeInfo: nodeInfo, AdminToken: f.adminToken,
		Ready: readiness(eng, n), Registry: reg, TrustedProxies: trustedProxies, NodeClient: certs.nodeClient(),
		Top: &top.Service{Local: eng, Cluster: n, Timeout: topTimeout}})
	if err != nil {
		return err
	}
	httpSrv := srv.HTTPServer(f.httpAddr)
	httpErr := make(chan error, 1)
	if certs.http != nil {
		httpSrv.TLSConfig = transport.HTTPServerConfig(certs.http, certs.node)
		go func() { httpErr <- httpSrv.ServeTLS(httpLn, "", "") }()
	} else {
		go func() { httpErr <- httpSrv.Serve(httpLn) }()
	}
	go certs.watch(ctx, logger)
	grpcSvc.start()
	logger.Info("sluice serving", "node", f.nodeID, "http", httpLn.Addr().String(), "https", certs.http != nil,
		"node_tls", certs.node != nil, "grpc", grpcSvc.addr(), "raft", f.raftAddr)

	go eng.Run(ctx)
	if err := n.Open(ctx); err != nil {
		_ = httpSrv.Close()
		grpcSvc.stop(ctx)
		closeErr := n.Close()
		if ctx.Err() != nil {
			// SIGTERM before the node finished joining: a clean stop.
			logger.Info("shutting down before the node joined its cluster")
			return closeErr
		}
		return errors.Join(err, closeErr)
	}
	select {
	case <-ctx.Done():
		logger.Info("shutting down")
	case err := <-httpErr:
		if !errors.Is(err, http.ErrServerClosed) {
			_ = n.Close()
			return err
		}
	case err := <-grpcSvc.errs():
		_ = httpSrv.Close()
		_ = n.Close()
		return fmt.Errorf("grpc: %w", err)
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	// Hand leadership and the vote over while this node still serves, so
	// its absence costs the quorum nothing (node.Leave).
	leaveCtx, cancelLeave := context.WithTimeout(shutdownCtx, leaveTimeout)
	if err := n.Leave(leaveCtx); err != nil {
		logger.Warn("leaving the voting core", "err", err)
	}
	cancelLeave()
	if err := httpSrv.Shutdown(shutdownCtx); err != nil {
		logger.Warn("http shutdown", "err", err)
	}
	grpcSvc.stop(shutdownCtx)
	eng.Close(shutdownCtx)
	return n.Close()
}

// topTimeout bounds how long GET /v1/top waits for the other members.
const topTimeout = 3 * time.Second

// dialRedis makes the Redis limiter. Redis being down at start is no error:
// the node decides in fallback until the probe reaches Redis (in auto mode,
// the probe also learns whether it is a cluster) and then turns global.
func dialRedis(ctx context.Context, f serveFlags, logger *slog.Logger, opts ...lua.DialOption) (*lua.Limiter, error) {
	dial := func(ctx context.Context) (redis.UniversalClient, error) {
		return lua.Dial(ctx, f.redis, f.redisMode, f.redisTimeout, opts...)
	}
	rdb, err := dial(ctx)
	switch {
	case errors.Is(err, lua.ErrModeUnknown):
		logger.Warn("redis unreachable at start; deciding in fallback mode until it answers", "err", err)
		return lua.NewPendingLimiter(dial), nil
	case err != nil:
		return nil, err
	}
	return lua.NewLimiter(rdb), nil
}

// openQuotaStore opens local mode's quota counters, beside the raft store.
func openQuotaStore(dataDir string) (*engine.QuotaStore, error) {
	if err := os.MkdirAll(dataDir, 0o750); err != nil {
		return nil, fmt.Errorf("--data-dir: %w", err)
	}
	return engine.OpenQuotaStore(filepath.Join(dataDir, "quotas.db"))
}

// loadBootstrapRules reads --rules, or the default sample when present.
func loadBootstrapRules(file string) ([]byte, error) {
	if file == "" {
		if _, err := os.Stat(defaultRulesFile); err != nil {
			return nil, nil
		}
		file = defaultRulesFile
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("--rules: %w", err)
	}
	if _, err := rules.Parse(data); err != nil {
		return nil, fmt.Errorf("--rules %s: %w", file, err)
	}
	return data, nil
}

// advertisedHTTP derives the HTTP address peers should use: --http-advertise,
// else the listen address with an unspecified host replaced by the raft
// advertise host (so a node on ":8000" with raft on 10.0.0.5 advertises 10.0.0.5:8000).
func advertisedHTTP(f serveFlags, ln net.Addr) string {
	if f.httpAdvertise != "" {
		return f.httpAdvertise
	}
	_, port, _ := net.SplitHostPort(ln.String())
	host, _, _ := net.SplitHostPort(f.httpAddr)
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		raft := f.raftAdvertise
		if raft == "" {
			raft = f.raftAddr
		}
		host, _, _ = net.SplitHostPort(raft)
	}
	return net.JoinHostPort(host, port)
}

// joinTargets is --join without this node's own address, so every member of
// a StatefulSet can be given the same --join (the first pods' addresses,
// any of which can let a new pod in). The first address is the seed: the
// node it names, without raft state, bootstraps a new cluster once a
// majority of the listed nodes answer that they belong to none, and joins
// the one they belong to otherwise (node.Config.Seed); a restarted one
// rejoins from its raft state.
func joinTargets(join, self string) (targets []string, seed bool) {
	for i, target := range splitList(join) {
		if strings.TrimRight(trimScheme(target), "/") != self {
			targets = append(targets, target)
		} else if i == 0 {
			seed = true
		}
	}
	return targets, seed
}

func trimScheme(target string) string {
	if _, rest, ok := strings.Cut(target, "://"); ok {
		return rest
	}
	return target
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	default:
		return nil, fmt.Errorf("--log-format: %q is not text or json", format)
	}
}

// readiness is /readyz: the node knows a leader and has its rules, and the
// engine has installed them (raft publishes the state a moment before the
// engine's hook has compiled it; until then checks answer 503).
func readiness(eng *engine.Engine, n *node.Node) func() error {
	return func() error {
		if err := n.Ready(); err != nil {
			return err
		}
		if eng.RulesVersion() == 0 {
			return errors.New("rules not installed in the engine yet")
		}
		return nil
	}
}
