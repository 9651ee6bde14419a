package systest_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/cmd/sluice/systest"
	"github.com/sluicehq/sluice/lua/redistest"
	"github.com/sluicehq/sluice/node/accuracy"
)

// lifeRules limits /ping (the node's own middleware) and one user key.
const lifeRules = `{"rules": [
 {"name": "ping", "match": {"route": "/ping"}, "key": ["ip"], "limit": {"rate": 10, "per": "1m", "burst": 10}},
 {"name": "user", "key": ["user"], "limit": {"rate": 5, "per": "1m", "burst": 5}}]}`

// firstAnswer polls p with one check until the node answers at all (a
// restarted process refuses connections at first) and returns that answer.
func firstAnswer(t *testing.T, p *systest.Proc, checkBody string) (int, string) {
	t.Helper()
	deadline := time.Now().Add(readyWithin)
	for {
		status, body, err := systest.Do(context.Background(), http.MethodPost, p.URL()+"/v1/check", checkBody, "")
		if err == nil {
			return status, body
		}
		if time.Now().After(deadline) || !p.Running() {
			t.Fatalf("%s never answered a check: %v", p.ID, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// readyWithin bounds a restarted node's start on a loaded machine.
const readyWithin = 30 * time.Second

// A cluster of three loses every node; one restarts alone, so it can never
// elect a leader. From its first answer it decides under the rules it last
// applied (which were in its raft log, not in a snapshot), limits /ping, and
// says it has no leader everywhere an operator looks.
func TestLoneSurvivorDecidesOnItsLastRules(t *testing.T) {
	opts := systest.Options{Rules: rulesDoc("boot", 100)}
	c := systest.StartCluster(t, opts, opts, opts)
	v := putRules(t, c.Leader(), lifeRules, "")
	for _, p := range c.Nodes {
		waitFor(t, 10*time.Second, p.ID+" has the new rules", hasRules(p, v, "ping"))
	}
	lone := c.Nodes[2]
	for _, p := range c.Nodes {
		p.Kill()
	}
	lone.Restart()

	if status, body := firstAnswer(t, lone, `{"attributes": {"user": "alice"}}`); status != http.StatusOK {
		t.Fatalf("first check after the restart answered %d %s, want 200 under rules version %d", status, body, v)
	}
	doc, err := rulesOn(lone)
	if err != nil || doc.Version != v {
		t.Fatalf("GET /v1/rules = %+v, %v; want version %d", doc, err, v)
	}
	pingStatuses := map[int]int{}
	for range 12 {
		status, _, err := systest.Get(lone.URL() + "/ping")
		if err != nil {
			t.Fatal(err)
		}
		pingStatuses[status]++
	}
	if pingStatuses[http.StatusTooManyRequests] == 0 || pingStatuses[http.StatusOK] > 10 {
		t.Fatalf("12 × /ping against a burst of 10 answered %v, want it limited", pingStatuses)
	}

	noLeader := fmt.Sprintf("no leader; deciding on rules version %d", v)
	status, body, err := systest.Get(lone.URL() + "/readyz")
	if err != nil || status != http.StatusServiceUnavailable || !strings.Contains(body, noLeader) {
		t.Errorf("/readyz = %d %s %v, want 503 saying %q", status, body, err, noLeader)
	}
	st, err := systest.ClusterStatus(lone, "")
	if err != nil || st.Leader != "" || st.RulesVersion != v || st.Warning != noLeader {
		t.Errorf("/v1/cluster = %+v, %v; want no leader, rules_version %d, warning %q", st, err, v, noLeader)
	}
	if _, metrics, err := systest.Get(lone.URL() + "/metrics"); err != nil ||
		!strings.Contains(metrics, "\nsluice_raft_has_leader 0\n") || !strings.Contains(metrics, fmt.Sprintf("\nsluice_rules_version %d\n", v)) {
		t.Errorf("/metrics lacks sluice_raft_has_leader 0 and sluice_rules_version %d (err %v)", v, err)
	}
	status, body, err = systest.Do(context.Background(), http.MethodPut, lone.URL()+"/v1/rules", rulesDoc("x", 1), "")
	if err != nil || status != http.StatusServiceUnavailable || !strings.Contains(body, "no leader") {
		t.Errorf("PUT /v1/rules without a leader = %d %s %v, want 503 no leader", status, body, err)
	}
}

// A node started while its Redis is down starts, decides in fallback mode,
// and turns global by itself once Redis is up: in auto mode, where it must
// first learn whether Redis is a cluster, and in single mode.
func TestStartWithRedisDown(t *testing.T) {
	for _, mode := range []string{"auto", "single"} {
		t.Run(mode, func(t *testing.T) {
			redis := redistest.StartServer(t)
			redis.Stop()
			p := systest.StartNode(t, systest.Options{Rules: lifeRules, Redis: redis.Addr(), RedisMode: mode})
			p.WaitReady()
			if status, d := checkUser(t, p, "alice"); d.Mode != "fallback" || (status != http.StatusOK && status != http.StatusTooManyRequests) {
				t.Fatalf("check with Redis down = %d %+v, want a decision in fallback mode", status, d)
			}
			redis.Start()
			waitFor(t, 10*time.Second, p.ID+" in global mode", func() error {
				if status, d := checkUser(t, p, "bob"); d.Mode != "global" {
					return fmt.Errorf("answered %d in mode %q", status, d.Mode)
				}
				return nil
			})
		})
	}
}

// A follower killed with -9 and restarted at once while a hot key is driven
// through every node, itself included, with no health checks: from its first
// answer after the restart it decides (never 503), and no window admits more
// than the envelope. Redis stays healthy, so ε is the measurement's jitter.
func TestRestartUnderLoad(t *testing.T) {
	redis := redistest.StartServer(t)
	opts := systest.Options{Rules: faultRules, Redis: redis.Addr(), RedisMode: "single", Args: healthyRedisArgs}
	c := systest.StartCluster(t, opts, opts, opts)
	rec := accuracy.NewRecorder()
	load := systest.StartLoad(t, systest.LoadConfig{Nodes: c.Nodes, Body: faultBody, Key: faultKey, Recorder: rec, NoHealthCheck: true})
	waitMode(t, load, rec, c.Nodes, "global", 0, 10*time.Second)
	hold(time.Second)

	victim := c.Others(c.Leader())[0]
	victim.Kill()
	killedAt := rec.Now()
	victim.Restart()
	waitFor(t, readyWithin, victim.ID+" answering again", func() error {
		for _, o := range load.Outcomes() {
			if o.Node == victim.ID && o.Sent > killedAt && o.Status != 0 {
				return nil
			}
		}
		return fmt.Errorf("no answer since the kill")
	})
	hold(3 * time.Second)
	load.Stop()

	outcomes, admits := load.Outcomes(), rec.Admits()
	t.Logf("outcomes: %s", counts(outcomes))
	// Every answer the restarted node gives is a decision, and every request
	// sent once its first answer had come back is answered. (A request sent
	// before that may still have met the closed port: a load worker stamps
	// Sent before it dials, and a stalled worker may dial after a later one.)
	answered := time.Duration(-1)
	for _, o := range outcomes {
		if o.Node != victim.ID || o.Sent <= killedAt || o.Status == 0 {
			continue
		}
		if o.Status != http.StatusOK && o.Status != http.StatusTooManyRequests {
			t.Errorf("%s answered %d to a request sent %v after the kill, want a decision", victim.ID, o.Status, (o.Sent - killedAt).Round(time.Millisecond))
		}
		if answered < 0 || o.Done < answered {
			answered = o.Done
		}
	}
	t.Logf("%s answered again %v after the kill", victim.ID, (answered - killedAt).Round(time.Millisecond))
	requireAnswersSince(t, outcomes, answered, victim)
	requireAnswers(t, outcomes, c.Others(victim)...)
	requireNoFallback(t, outcomes)
	if got := excess(admits); got > faultEpsJitter {
		t.Errorf("restart under load over-admitted by %.1f, want at most %v (Redis healthy); admits per second:%s", got, faultEpsJitter, timeline(outcomes))
	}
}
