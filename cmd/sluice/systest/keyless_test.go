package systest_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/sluicehq/sluice/api/admin"
	"github.com/sluicehq/sluice/cmd/sluice/systest"
	"github.com/sluicehq/sluice/lua/redistest"
	"github.com/sluicehq/sluice/node/accuracy"
)

// Key-less rules with real processes: one bucket for every request a rule
// applies to, whoever sends it, held across three nodes in each mode with
// the ε that mode's keyed tests assert. The workers send six different
// callers, so a rule that kept one bucket per caller would admit six times
// the limit and fail every envelope below.
var keylessBucket = bucket{rule: "backend", bodies: []string{
	`{"attributes": {"tenant": "acme", "ip": "192.0.2.1"}}`,
	`{"attributes": {"tenant": "globex", "ip": "192.0.2.2"}}`,
	`{"attributes": {"ip": "198.51.100.7"}}`,
	`{"attributes": {"tenant": "initech"}}`,
	`{"attributes": {"user": "u-17", "route": "/pay/card"}}`,
	`{"attributes": {}}`,
}}

// keylessRules limits everything together to rate per second with burst.
func keylessRules(rate, burst int) string {
	return fmt.Sprintf(`{"rules": [{"name": %q, "key": [], "limit": {"rate": %d, "per": "1s", "burst": %d}}]}`,
		keylessBucket.rule, rate, burst)
}

// keylessUtilisation is global mode's utilisation goal, as the in-process
// accuracy test asserts it (node/global_accuracy_test.go, minUtilisation).
const keylessUtilisation = 0.95

// TestKeylessRuleGlobalMode: with Redis healthy the shared bucket keeps the
// promised ε of 0, measured to within faultEpsJitter, and is used fully.
func TestKeylessRuleGlobalMode(t *testing.T) {
	redis := redistest.StartServer(t)
	opts := systest.Options{Rules: keylessRules(faultRate, faultBurst), Redis: redis.Addr(), RedisMode: "single", Args: healthyRedisArgs}
	c := systest.StartCluster(t, opts, opts, opts)
	load, rec := startFaultLoad(t, c.Nodes, keylessBucket)
	waitMode(t, load, rec, c.Nodes, "global", 0, 10*time.Second)
	from := rec.Now() + 2*time.Second
	hold(10 * time.Second)
	to := rec.Now()
	load.Stop()

	outcomes, admits := load.Outcomes(), rec.Admits()
	requireAnswers(t, outcomes, c.Nodes...)
	requireNoFallback(t, outcomes)
	got, u := excess(admits), accuracy.Utilisation(admits, faultRate, from, to)
	t.Logf("key-less, global: utilisation %.3f over %v; worst window exceeds burst + rate·Δ by %.1f (ε %v); outcomes %s",
		u, (to - from).Round(time.Millisecond), got, faultEpsJitter, counts(outcomes))
	if got > faultEpsJitter {
		t.Errorf("the shared bucket over-admitted by %.1f, want at most %v; admits per second:%s", got, faultEpsJitter, timeline(outcomes))
	}
	if u < keylessUtilisation {
		t.Errorf("utilisation %.3f, want >= %.2f; admits per second:%s", u, keylessUtilisation, timeline(outcomes))
	}
}

// TestKeylessRuleLeaseMode: without Redis, three nodes hold the shared
// bucket with leased shares (ε and goal of TestLeaseModeEvenLoad).
func TestKeylessRuleLeaseMode(t *testing.T) {
	steadyLeaseLoad(t, "key-less, even load", keylessRules(leaseRate, leaseBurst), keylessBucket, []int{3, 3, 3}, 0.9)
}

// TestKeylessRuleRedisStopped: Redis stops under load on the shared bucket;
// the nodes fall back to their leases and return to global mode.
func TestKeylessRuleRedisStopped(t *testing.T) {
	redisStoppedUnderLoad(t, keylessRules(faultRate, faultBurst), keylessBucket)
}

// TestKeylessQuotaAcrossNodes: a key-less quota is one counter for the
// whole cluster: driven from three nodes by six callers, it admits exactly
// its limit, and every node reports it used up.
func TestKeylessQuotaAcrossNodes(t *testing.T) {
	const limit = 300
	redis := redistest.StartServer(t)
	rules := fmt.Sprintf(`{"rules": [{"name": %q, "key": [], "quota": {"limit": %d, "per": "day"}}]}`, keylessBucket.rule, limit)
	opts := systest.Options{Rules: rules, Redis: redis.Addr(), RedisMode: "single", Args: healthyRedisArgs}
	c := systest.StartCluster(t, opts, opts, opts)
	load, rec := startFaultLoad(t, c.Nodes, keylessBucket)
	waitFor(t, 30*time.Second, "the quota used up", func() error {
		if n := len(rec.Admits()); n < limit {
			return fmt.Errorf("%d admitted", n)
		}
		return nil
	})
	// The load goes on: any token still held in a node's slice, or counted
	// twice, would show as an admit beyond the limit.
	spentAt := rec.Now()
	waitMode(t, load, rec, c.Nodes, "global", spentAt, 10*time.Second)
	hold(time.Second)
	load.Stop()

	outcomes := load.Outcomes()
	requireAnswers(t, outcomes, c.Nodes...)
	requireNoFallback(t, outcomes)
	perNode := map[string]int{}
	for _, o := range outcomes {
		if o.Status == http.StatusOK {
			perNode[o.Node]++
		}
	}
	t.Logf("key-less quota of %d: admitted %d (per node %v); outcomes %s", limit, len(rec.Admits()), perNode, counts(outcomes))
	if n := len(rec.Admits()); n != limit {
		t.Errorf("the shared quota admitted %d, want exactly %d", n, limit)
	}
	if len(perNode) < len(c.Nodes) {
		t.Errorf("admits per node %v: want every node to have spent from the shared counter", perNode)
	}
	for _, p := range c.Nodes {
		status, body, err := systest.Get(p.URL() + "/v1/usage?rule=" + keylessBucket.rule + "&key=")
		var u admin.Usage
		if err == nil {
			err = json.Unmarshal([]byte(body), &u)
		}
		if err != nil || status != http.StatusOK || u.Used == nil || *u.Used+u.Reserved < limit || u.Remaining != 0 {
			t.Errorf("GET /v1/usage of the key-less quota on %s: %d %s (%v), want it used up", p.ID, status, body, err)
		}
	}
}
