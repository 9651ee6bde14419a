package systest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/api/admin"
)

// leaderTimeout bounds waiting for an election: raft's production timings
// need a few seconds, more on a loaded machine.
const leaderTimeout = 30 * time.Second

// Cluster is a set of nodes started together: the first bootstraps, the rest
// join it with --join.
type Cluster struct {
	t     testing.TB
	Nodes []*Proc
}

// StartCluster starts one node per Options and waits until every node is
// ready. Nodes without an ID are named n1, n2, ...; every node after the
// first joins the ones before it unless its Join is set.
func StartCluster(t testing.TB, opts ...Options) *Cluster {
	t.Helper()
	c := &Cluster{t: t}
	var joined []string
	for i, o := range opts {
		if o.ID == "" {
			o.ID = fmt.Sprintf("n%d", i+1)
		}
		if i > 0 && len(o.Join) == 0 {
			o.Join = joined
		}
		p := StartNode(t, o)
		if i == 0 {
			// The others join through the leader; wait for it to exist.
			p.WaitReady()
		}
		joined = append(joined, p.HTTPAddr)
		c.Nodes = append(c.Nodes, p)
	}
	for _, p := range c.Nodes {
		p.WaitReady()
	}
	return c
}

// Leader waits until the live nodes agree on a leader and returns it.
func (c *Cluster) Leader() *Proc {
	c.t.Helper()
	return WaitLeader(c.t, c.Live()...)
}

// Live returns the nodes that run and are not paused.
func (c *Cluster) Live() []*Proc {
	var live []*Proc
	for _, p := range c.Nodes {
		if p.Running() && !p.Paused() {
			live = append(live, p)
		}
	}
	return live
}

// Others returns every node but p.
func (c *Cluster) Others(p *Proc) []*Proc {
	var others []*Proc
	for _, o := range c.Nodes {
		if o != p {
			others = append(others, o)
		}
	}
	return others
}

// WaitLeader waits until every one of procs names the same leader in GET
// /v1/cluster, that leader is one of procs and calls itself leader, and
// returns it.
func WaitLeader(t testing.TB, procs ...*Proc) *Proc {
	t.Helper()
	deadline := time.Now().Add(leaderTimeout)
	for {
		leader, err := Leader(procs...)
		if err == nil {
			return leader
		}
		if time.Now().After(deadline) {
			t.Fatalf("systest: no agreed leader after %v: %v", leaderTimeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Leader asks every one of procs for the cluster status once and returns the
// leader they all name, or an error saying why there is none.
func Leader(procs ...*Proc) (*Proc, error) {
	if len(procs) == 0 {
		return nil, fmt.Errorf("no nodes to ask")
	}
	var named string
	for _, p := range procs {
		st, err := ClusterStatus(p, "")
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p.ID, err)
		}
		if st.Leader == "" {
			return nil, fmt.Errorf("%s knows no leader", p.ID)
		}
		if named != "" && st.Leader != named {
			return nil, fmt.Errorf("nodes disagree: %s and %s", named, st.Leader)
		}
		named = st.Leader
	}
	for _, p := range procs {
		if p.ID != named {
			continue
		}
		st, err := ClusterStatus(p, "")
		if err != nil {
			return nil, err
		}
		for _, n := range st.Nodes {
			if n.ID == p.ID && n.State == "leader" {
				return p, nil
			}
		}
		return nil, fmt.Errorf("%s is named leader but does not say so itself", named)
	}
	return nil, fmt.Errorf("leader %s is not among the nodes asked", named)
}

// ClusterStatus fetches GET /v1/cluster from p.
func ClusterStatus(p *Proc, token string) (admin.ClusterStatus, error) {
	var st admin.ClusterStatus
	status, body, err := Do(context.Background(), http.MethodGet, p.URL()+"/v1/cluster", "", token)
	if err != nil {
		return st, err
	}
	if status != http.StatusOK {
		return st, fmt.Errorf("GET /v1/cluster: %d %s", status, strings.TrimSpace(body))
	}
	err = json.Unmarshal([]byte(body), &st)
	return st, err
}
