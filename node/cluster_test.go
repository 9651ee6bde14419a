package node

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/node/engine"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/api"
	"github.com/sluicehq/sluice/api/admin"
)

// This file is the in-process cluster harness (in the spirit of raft's
// testing.go): real nodes on 127.0.0.1 with fast raft timings, each behind
// the real HTTP API so followers forward writes over HTTP as in production.

const testToken = "cluster-test-token"

var fastRaft = RaftTimeouts{
	Heartbeat:   100 * time.Millisecond,
	Election:    100 * time.Millisecond,
	LeaderLease: 100 * time.Millisecond,
	Commit:      10 * time.Millisecond,
}

const testRules = `{"rules":[{"name":"per-ip","key":["ip"],"limit":{"rate":100,"per":"1s"}}]}`

// rulesDoc returns a valid rules document whose rate is rate.
func rulesDoc(rate int) []byte {
	return []byte(strings.Replace(testRules, `"rate":100`, `"rate":`+strconv.Itoa(rate), 1))
}

// rulesSeen records what OnRules reported to one node incarnation.
type rulesSeen struct {
	mu       sync.Mutex
	versions []uint64
}

func (r *rulesSeen) record(v uint64, _ []byte) {
	r.mu.Lock()
	r.versions = append(r.versions, v)
	r.mu.Unlock()
}

func (r *rulesSeen) all() []uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]uint64(nil), r.versions...)
}

func (r *rulesSeen) latest() uint64 {
	all := r.all()
	if len(all) == 0 {
		return 0
	}
	return all[len(all)-1]
}

// member is one node slot of a test cluster. Its HTTP listener and data
// dir outlive restarts of the node behind it.
type member struct {
	id      string
	dataDir string
	http    *httptest.Server
	handler atomic.Pointer[http.Handler]
	node    *Node
	rules   *rulesSeen
}

func (m *member) httpAddr() string { return strings.TrimPrefix(m.http.URL, "http://") }

type cluster struct {
	t       *testing.T
	members []*member
	// tune, when set, adjusts each node's configuration before it starts.
	tune func(m *member, cfg *Config)
}

// startCluster starts n nodes: the first bootstraps with testRules, the
// others join through it. It returns once every node knows the leader.
func startCluster(t *testing.T, n int) *cluster {
	t.Helper()
	return startTunedCluster(t, n, nil)
}

// startTunedCluster is startCluster with tune applied to every node's
// configuration.
func startTunedCluster(t *testing.T, n int, tune func(m *member, cfg *Config)) *cluster {
	t.Helper()
	c := &cluster{t: t, tune: tune}
	for i := range n {
		m := c.addMember("n" + strconv.Itoa(i+1))
		var join []string
		if i > 0 {
			join = []string{c.members[0].httpAddr()}
		}
		c.start(m, "127.0.0.1:0", join)
	}
	c.waitFor("every node knows the leader", 5*time.Second, func() bool {
		for _, m := range c.members {
			if m.node.LeaderHTTPAddr() == "" {
				return false
			}
		}
		return true
	})
	return c
}

func (c *cluster) addMember(id string) *member {
	m := &member{id: id, dataDir: c.t.TempDir()}
	m.handler.Store(&stoppedHandler)
	m.http = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		(*m.handler.Load()).ServeHTTP(w, r)
	}))
	c.members = append(c.members, m)
	c.t.Cleanup(func() {
		c.stop(m)
		m.http.Close()
	})
	return m
}

var stoppedHandler http.Handler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusServiceUnavailable)
	io.WriteString(w, `{"error":"unavailable: node stopped"}`)
})

// start runs a node in slot m on raftAddr and opens it with join.
func (c *cluster) start(m *member, raftAddr string, join []string) {
	c.t.Helper()
	n, err := c.newNode(m, raftAddr, join, testToken)
	if err != nil {
		c.t.Fatalf("%s: %v", m.id, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.Open(ctx); err != nil {
		c.t.Fatalf("%s: open: %v", m.id, err)
	}
}

// newNode builds and serves a node in slot m without opening it.
func (c *cluster) newNode(m *member, raftAddr string, join []string, token string) (*Node, error) {
	m.rules = &rulesSeen{}
	cfg := Config{
		ID: m.id, DataDir: m.dataDir, RaftAddr: raftAddr, HTTPAdvertise: m.httpAddr(),
		Join: join, AdminToken: token, Logger: testLogger(c.t, m.id),
		RaftTimeouts: fastRaft, OnRules: m.rules.record,
	}
	if join == nil {
		cfg.BootstrapRules = []byte(testRules)
	}
	if c.tune != nil {
		c.tune(m, &cfg)
	}
	n, err := New(cfg)
	if err != nil {
		return nil, err
	}
	srv, err := api.NewServer(api.Config{
		Engine: engine.New(engine.WithMetrics(engine.NewMetrics(prometheus.NewRegistry()))), Admin: n, AdminToken: token,
	})
	if err != nil {
		n.Close()
		return nil, err
	}
	h := srv.Handler()
	m.handler.Store(&h)
	m.node = n
	return n, nil
}

// stop closes the node in slot m, keeping its data dir and HTTP address.
func (c *cluster) stop(m *member) {
	if m.node == nil {
		return
	}
	m.handler.Store(&stoppedHandler)
	if err := m.node.Close(); err != nil {
		c.t.Errorf("%s: close: %v", m.id, err)
	}
}

// restart starts slot m again on its previous raft address.
func (c *cluster) restart(m *member, join []string) {
	c.t.Helper()
	addr := string(m.node.raftAddr)
	c.stop(m)
	c.start(m, addr, join)
}

// leader waits for a leader among the running nodes and returns its slot.
func (c *cluster) leader() *member {
	c.t.Helper()
	var found *member
	c.waitFor("a leader", 5*time.Second, func() bool {
		for _, m := range c.running() {
			if m.node.IsLeader() {
				found = m
				return true
			}
		}
		return false
	})
	return found
}

// follower returns a running node that is not the leader.
func (c *cluster) follower() *member {
	c.t.Helper()
	leader := c.leader()
	for _, m := range c.running() {
		if m != leader {
			return m
		}
	}
	c.t.Fatal("no follower running")
	return nil
}

func (c *cluster) running() []*member {
	var out []*member
	for _, m := range c.members {
		if m.node != nil && !m.node.closed.Load() {
			out = append(out, m)
		}
	}
	return out
}

// setRules writes rules with the given rate through m, retrying while the
// cluster is between leaders (as a client does on 503), and returns the new
// version.
func (c *cluster) setRules(m *member, rate int) uint64 {
	c.t.Helper()
	var version uint64
	c.waitFor("a rules write through "+m.id, 3*time.Second, func() bool {
		v, err := m.node.SetRules(context.Background(), rulesDoc(rate))
		if err != nil && !errors.Is(err, admin.ErrNoLeader) && !errors.Is(err, admin.ErrUnavailable) {
			c.t.Fatalf("SetRules through %s: %v", m.id, err)
		}
		version = v
		return err == nil
	})
	return version
}

// waitRules waits until every running node has applied version.
func (c *cluster) waitRules(version uint64, within time.Duration) {
	c.t.Helper()
	c.waitFor("rules version "+strconv.Itoa(int(version))+" everywhere", within, func() bool {
		for _, m := range c.running() {
			if m.rules.latest() != version {
				return false
			}
		}
		return true
	})
}

// waitFor polls cond and fails the test if it does not hold within timeout.
func (c *cluster) waitFor(what string, timeout time.Duration, cond func() bool) {
	c.t.Helper()
	waitFor(c.t, timeout, what, cond)
}

// testLogger sends warnings and errors to the test log, tagged with the node.
func testLogger(t *testing.T, id string) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})).With("node", id)
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// adminCall makes an admin API call to m with the test token and extra
// header name/value pairs, and returns the status and body.
func adminCall(t *testing.T, m *member, method, path, body string, header ...string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, m.http.URL+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+testToken)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(out)
}
