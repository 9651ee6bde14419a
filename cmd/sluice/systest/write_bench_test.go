package systest_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/sluicehq/sluice/cmd/sluice/systest"
)

// BenchmarkLeaderWrite measures the leader's write latency against the
// number of members: one PUT /v1/rules round trip sent to the leader, which
// answers once the new rules are committed (a quorum of voters has them)
// and applied. The members are real processes on this machine; each
// cluster is started and settled (its voting core complete) outside the
// timing. docs/PERFORMANCE.md records a run.
func BenchmarkLeaderWrite(b *testing.B) {
	for _, tc := range []struct {
		name          string
		members, core int
		args          []string
	}{
		{"members=3", 3, 3, nil},
		{"members=9", 9, 5, nil},
		{"members=9,voters=3", 9, 3, []string{"--voters=3"}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			opts := make([]systest.Options, tc.members)
			for i := range opts {
				opts[i] = systest.Options{Rules: rulesDoc("w", 5), Args: tc.args}
			}
			c := systest.StartCluster(b, opts...)
			leader := settledCore(b, c, tc.core)
			client := leader.Client("")
			docs := [2][]byte{[]byte(rulesDoc("a", 5)), []byte(rulesDoc("b", 5))}
			var took []time.Duration
			for b.Loop() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				start := time.Now()
				_, err := client.SetRules(ctx, docs[len(took)%2])
				took = append(took, time.Since(start))
				cancel()
				if err != nil {
					b.Fatalf("PUT /v1/rules on leader %s: %v", leader.ID, err)
				}
			}
			slices.Sort(took)
			b.ReportMetric(float64(took[len(took)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(took[len(took)*99/100].Microseconds()), "p99-µs")
		})
	}
}

// settledCore waits until c's leader counts core voters and returns it.
func settledCore(b *testing.B, c *systest.Cluster, core int) *systest.Proc {
	b.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		leader := c.Leader()
		st, err := systest.ClusterStatus(leader, "")
		voters := 0
		for _, n := range st.Nodes {
			if n.Voter {
				voters++
			}
		}
		if err == nil && voters == core && len(st.Nodes) == len(c.Nodes) {
			return leader
		}
		if time.Now().After(deadline) {
			b.Fatalf("no core of %d voters among %d members: %+v %v", core, len(c.Nodes), st.Nodes, fmt.Sprint(err))
		}
		time.Sleep(100 * time.Millisecond)
	}
}
