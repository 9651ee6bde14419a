package systest_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/api/admin"
	"github.com/sluicehq/sluice/cmd/sluice/systest"
	"github.com/sluicehq/sluice/node/accuracy"
)

// The fault tests limit one tenant to faultRate per second with a small
// burst, so that ε terms measured in bursts stay small against rate·Δ, and
// drive it far above the limit from every node.
//
// The bounds the tests assert are docs/DESIGN.md's ε terms (Safety §6).
const (
	faultRate  = 200
	faultBurst = 20
	faultKey   = "tenant=acme"
	faultBody  = `{"attributes": {"tenant": "acme"}}`
	// faultNodes is M, the cluster size of every fault test.
	faultNodes = 3
	// faultProbe is P, the fallback breaker's probe interval (node/engine/redis_health.go).
	faultProbe = 100 * time.Millisecond
	// faultEpsEpisode is ε for each fallback episode ending in a window:
	// b + M + r·P. Tests that keep Redis up run with healthyRedisArgs, so a
	// loaded machine's slow round trip starts no episode, and assert
	// faultEpsJitter instead.
	faultEpsEpisode = faultBurst + faultNodes + faultRate*float64(faultProbe)/float64(time.Second)
	// faultEpsInEpisode is ε for windows inside one fallback episode: M,
	// the rounding of every node's fallback burst up to a whole token.
	faultEpsInEpisode = faultNodes
	// faultEpsJitter is ε while Redis stays healthy: the promise is 0, and
	// what the harness can measure on top of it is excess's resolution
	// (half a token) plus the fraction of a token rate·Δ leaves over a
	// whole count, so one token. The clocks add nothing: Redis TIME and the
	// recorder's monotonic clock run on this machine at the same rate (NTP
	// slews both alike), and CheckEnvelope only counts admits certainly
	// inside a window, so harness delays cannot make an excess appear.
	faultEpsJitter = 1.0
)

// healthyRedisArgs are the serve flags of tests that keep Redis healthy:
// a --redis-timeout long enough that a loaded machine's slow round trip is
// not taken for an outage (which would be a fallback episode, with its ε).
var healthyRedisArgs = []string{"--redis-timeout=1s"}

// requireNoFallback fails the test if any decision was made in fallback
// mode: the test's ε assumes Redis stayed healthy throughout.
func requireNoFallback(t *testing.T, outcomes []systest.Outcome) {
	t.Helper()
	for _, o := range outcomes {
		if o.Mode == "fallback" {
			t.Fatalf("%s decided in fallback mode (request sent at %v) although Redis stayed up", o.Node, o.Sent)
		}
	}
}

var faultRules = tenantRules(faultRate, faultBurst)

// bucket is what a load drives: the rule whose bucket it fills, the key
// the recorder files admits under, and the check bodies the workers send
// (taking turns), which all land in that one bucket.
type bucket struct {
	rule, key string
	bodies    []string
}

// tenantBucket is the acme tenant's bucket of tenantRules.
var tenantBucket = bucket{rule: "tenant", key: faultKey, bodies: []string{faultBody}}

// tenantRules limits each tenant to rate per second with burst.
func tenantRules(rate, burst int) string {
	return fmt.Sprintf(`{"rules": [{"name": "tenant", "key": ["tenant"], "limit": {"rate": %d, "per": "1s", "burst": %d}}]}`,
		rate, burst)
}

// startFaultLoad drives b from every node of nodes, as fast as they answer.
func startFaultLoad(t *testing.T, nodes []*systest.Proc, b bucket) (*systest.Load, *accuracy.Recorder) {
	t.Helper()
	rec := accuracy.NewRecorder()
	return systest.StartLoad(t, systest.LoadConfig{Nodes: nodes, Bodies: b.bodies, Key: b.key, Recorder: rec}), rec
}

// startSteadyLoad drives b from every node of c and returns once every
// node decides in global mode from a leased share, and the load has run a
// second more: the steady state each fault starts from.
func startSteadyLoad(t *testing.T, c *systest.Cluster, b bucket) (*systest.Load, *accuracy.Recorder) {
	t.Helper()
	load, rec := startFaultLoad(t, c.Nodes, b)
	waitMode(t, load, rec, c.Nodes, "global", 0, 10*time.Second)
	waitLeases(t, c, b.rule)
	hold(time.Second)
	return load, rec
}

// waitMode waits until every node in nodes has answered in mode after since.
func waitMode(t *testing.T, load *systest.Load, rec *accuracy.Recorder, nodes []*systest.Proc, mode string, since time.Duration, within time.Duration) {
	t.Helper()
	waitFor(t, within, "every node answering in "+mode+" mode", func() error {
		seen := map[string]bool{}
		for _, o := range load.Outcomes() {
			if o.Mode == mode && o.Sent >= since {
				seen[o.Node] = true
			}
		}
		for _, p := range nodes {
			if !seen[p.ID] {
				return fmt.Errorf("%s has not answered in %s mode since %v (now %v)", p.ID, mode, since, rec.Now())
			}
		}
		return nil
	})
}

// hold lets the load run for d: the tests measure what happens over a span
// of time, so here sleeping is the point rather than a guess.
func hold(d time.Duration) { time.Sleep(d) }

// excess is the smallest ε (to half a token) for which admits keep the
// envelope faultBurst + faultRate·Δ + ε in every window: the measured
// over-admission.
func excess(admits []accuracy.Admit) float64 {
	return excessOver(admits, faultBurst, faultRate)
}

// excessOver is excess for any bucket.
func excessOver(admits []accuracy.Admit, burst int64, rate float64) float64 {
	lo, hi := 0.0, float64(len(admits))
	for hi-lo > 0.5 {
		mid := (lo + hi) / 2
		if accuracy.CheckEnvelope(admits, burst, rate, mid) == nil {
			hi = mid
		} else {
			lo = mid
		}
	}
	return hi
}

// between returns the admits that certainly fell inside [from, to].
func between(admits []accuracy.Admit, from, to time.Duration) []accuracy.Admit {
	var in []accuracy.Admit
	for _, a := range admits {
		if a.Sent >= from && a.Done <= to {
			in = append(in, a)
		}
	}
	return in
}

// requireAnswers fails the test unless every outcome of the given nodes is
// a decision (200 or 429): no 5xx, no failed request.
func requireAnswers(t *testing.T, outcomes []systest.Outcome, nodes ...*systest.Proc) {
	t.Helper()
	requireAnswersSince(t, outcomes, 0, nodes...)
}

// requireAnswersSince is requireAnswers for the requests sent at or after since.
func requireAnswersSince(t *testing.T, outcomes []systest.Outcome, since time.Duration, nodes ...*systest.Proc) {
	t.Helper()
	want := map[string]bool{}
	for _, p := range nodes {
		want[p.ID] = true
	}
	bad := map[string]int{}
	var errs []string
	for _, o := range outcomes {
		if want[o.Node] && o.Sent >= since && o.Status != http.StatusOK && o.Status != http.StatusTooManyRequests {
			bad[fmt.Sprintf("%s:%d", o.Node, o.Status)]++
			if o.Err != "" && len(errs) < 5 {
				errs = append(errs, fmt.Sprintf("%s sent at %v, failed at %v: %s", o.Node, o.Sent.Round(time.Millisecond), o.Done.Round(time.Millisecond), o.Err))
			}
		}
	}
	if len(bad) > 0 {
		t.Fatalf("requests not answered with 200/429 (node:status → count; 0 = no answer): %v (since %v)\n%s", bad, since.Round(time.Millisecond), strings.Join(errs, "\n"))
	}
}

// modeSpan reports when node's first and last requests sent in [from, to]
// were answered in mode.
func modeSpan(outcomes []systest.Outcome, node, mode string, from, to time.Duration) (first, last time.Duration, ok bool) {
	for _, o := range outcomes {
		if o.Node != node || o.Mode != mode || o.Sent < from || o.Sent > to {
			continue
		}
		if !ok || o.Sent < first {
			first = o.Sent
		}
		if !ok || o.Sent > last {
			last = o.Sent
		}
		ok = true
	}
	return first, last, ok
}

// counts summarises outcomes by status and mode, for the logs.
func counts(outcomes []systest.Outcome) string {
	c := map[string]int{}
	for _, o := range outcomes {
		c[fmt.Sprintf("%d/%s", o.Status, o.Mode)]++
	}
	var parts []string
	for k, v := range c {
		parts = append(parts, fmt.Sprintf("%s=%d", k, v))
	}
	return strings.Join(parts, " ")
}

// timeline tabulates admits per second and node, to show where an excess
// happened when a test fails.
func timeline(outcomes []systest.Outcome) string {
	perSec := map[int]map[string]int{}
	last := 0
	for _, o := range outcomes {
		if o.Status != http.StatusOK {
			continue
		}
		s := int(o.Done / time.Second)
		if perSec[s] == nil {
			perSec[s] = map[string]int{}
		}
		perSec[s][o.Node+"/"+o.Mode]++
		last = max(last, s)
	}
	var b strings.Builder
	for s := 0; s <= last; s++ {
		fmt.Fprintf(&b, "\n  %3ds: %v", s, perSec[s])
	}
	return b.String()
}

// waitLeases waits until the leader has leased every node a share of
// rule beyond its floor, so that fallback decides from real leases
// rather than floors alone (the leader allocates from demand reports, a few
// seconds into the load with the default --lease-ttl).
func waitLeases(t *testing.T, c *systest.Cluster, rule string) {
	t.Helper()
	waitFor(t, 30*time.Second, "leases for every node", func() error {
		leases, err := ruleLeases(c.Leader(), rule)
		if err != nil {
			return err
		}
		for _, p := range c.Nodes {
			if l := leases[p.ID]; l.ExpiresInMs <= 0 {
				return fmt.Errorf("%s has no lease: %+v", p.ID, leases)
			}
		}
		return nil
	})
}

// ruleLeases reads every node's lease of rule from p.
func ruleLeases(p *systest.Proc, rule string) (map[string]admin.Lease, error) {
	status, body, err := systest.Get(p.URL() + "/v1/leases")
	if err != nil {
		return nil, err
	}
	var leases admin.Leases
	if err := json.Unmarshal([]byte(body), &leases); err != nil {
		return nil, fmt.Errorf("GET /v1/leases: %d %s: %w", status, body, err)
	}
	return leases[rule], nil
}
