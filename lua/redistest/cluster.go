package redistest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	clusterNodes = 6
	// nodeTimeout is short so a killed master is failed over in about two seconds.
	nodeTimeout = "1000"
	// busOffset is where Redis Cluster puts a node's bus port, relative to its client port.
	busOffset = 10000
	// clusterWait bounds forming the cluster and each failover.
	clusterWait = 30 * time.Second
)

// Cluster is a Redis Cluster of three masters with one replica each, on 127.0.0.1.
type Cluster struct {
	t     testing.TB
	nodes []*Server
	dead  map[string]bool
}

// StartCluster starts six cluster-enabled redis-servers, joins them with
// `redis-cli --cluster create`, and waits until every node sees all 16384 slots served
// and every replica is in sync. It stops them all when the test ends.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	requireBinary(t, "redis-cli")
	dir := t.TempDir()
	c := &Cluster{t: t, dead: map[string]bool{}}
	args := []string{
		"--cluster-enabled", "yes", "--cluster-node-timeout", nodeTimeout,
		// Any replica may take over, however long it was cut off: tests kill at will.
		"--cluster-replica-validity-factor", "0",
	}
	for i := range clusterNodes {
		nodeDir := filepath.Join(dir, strconv.Itoa(i))
		if err := os.Mkdir(nodeDir, 0o755); err != nil {
			t.Fatalf("redistest: %v", err)
		}
		c.nodes = append(c.nodes, startServer(t, nodeDir, freeClusterPort, args))
	}
	create := append([]string{"--cluster", "create"}, c.Addrs()...)
	create = append(create, "--cluster-replicas", "1", "--cluster-yes")
	ctx, cancel := context.WithTimeout(context.Background(), clusterWait)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "redis-cli", create...).CombinedOutput(); err != nil {
		t.Fatalf("redistest: redis-cli --cluster create: %v\n%s", err, out)
	}
	c.waitFor("the cluster to form", c.healthy)
	return c
}

// Addrs lists every node's host:port, dead or alive.
func (c *Cluster) Addrs() []string {
	addrs := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		addrs[i] = n.Addr()
	}
	return addrs
}

// MasterFor returns the address of the master serving key, as the first live node sees it.
func (c *Cluster) MasterFor(key string) string {
	c.t.Helper()
	var lastErr error
	for _, addr := range c.liveAddrs() {
		master, err := masterFor(addr, key)
		if err == nil {
			return master
		}
		lastErr = err
	}
	c.t.Fatalf("redistest: no live node knows the master for %q: %v", key, lastErr)
	return ""
}

// KillNode ends the node at addr with SIGKILL.
func (c *Cluster) KillNode(addr string) {
	c.t.Helper()
	for _, n := range c.nodes {
		if n.Addr() == addr {
			n.Kill()
			c.dead[addr] = true
			return
		}
	}
	c.t.Fatalf("redistest: %s is not a node of this cluster", addr)
}

// WaitFailover waits until a replica has taken over from the killed master at deadAddr:
// no live node names it a master any more, and the cluster is healthy again.
func (c *Cluster) WaitFailover(deadAddr string) {
	c.t.Helper()
	c.waitFor("a replica to replace "+deadAddr, func(ctx context.Context) error {
		for _, addr := range c.liveAddrs() {
			masters, err := slotMasters(ctx, addr)
			if err != nil {
				return err
			}
			if masters[deadAddr] {
				return fmt.Errorf("%s still names %s a master", addr, deadAddr)
			}
		}
		return c.healthy(ctx)
	})
}

// WaitHealthy waits until every live node reports cluster_state:ok with all slots served
// and every live replica is in sync with its master.
func (c *Cluster) WaitHealthy() {
	c.t.Helper()
	c.waitFor("the cluster to be healthy", c.healthy)
}

func (c *Cluster) liveAddrs() []string {
	var live []string
	for _, addr := range c.Addrs() {
		if !c.dead[addr] {
			live = append(live, addr)
		}
	}
	return live
}

func (c *Cluster) healthy(ctx context.Context) error {
	for _, addr := range c.liveAddrs() {
		if err := nodeHealthy(ctx, addr); err != nil {
			return fmt.Errorf("%s: %w", addr, err)
		}
	}
	return nil
}

// waitFor polls cond until it returns nil, failing the test after clusterWait.
func (c *Cluster) waitFor(what string, cond func(context.Context) error) {
	c.t.Helper()
	deadline := time.Now().Add(clusterWait)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := cond(ctx)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("redistest: waited %v for %s: %v", clusterWait, what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func nodeHealthy(ctx context.Context, addr string) error {
	rdb := nodeClient(addr)
	defer rdb.Close()
	info, err := rdb.ClusterInfo(ctx).Result()
	if err != nil {
		return err
	}
	if state, _ := infoField(info, "cluster_state"); state != "ok" {
		return fmt.Errorf("cluster_state is %q", state)
	}
	if served, _ := infoField(info, "cluster_slots_ok"); served != "16384" {
		return fmt.Errorf("cluster_slots_ok is %q, want 16384", served)
	}
	repl, err := rdb.Info(ctx, "replication").Result()
	if err != nil {
		return err
	}
	if role, _ := infoField(repl, "role"); role == "slave" {
		if link, _ := infoField(repl, "master_link_status"); link != "up" {
			return fmt.Errorf("replica link is %q", link)
		}
	}
	return nil
}

// slotMasters returns the addresses that addr's CLUSTER SLOTS names as masters.
func slotMasters(ctx context.Context, addr string) (map[string]bool, error) {
	rdb := nodeClient(addr)
	defer rdb.Close()
	slots, err := rdb.ClusterSlots(ctx).Result()
	if err != nil {
		return nil, err
	}
	masters := map[string]bool{}
	for _, s := range slots {
		masters[s.Nodes[0].Addr] = true
	}
	return masters, nil
}

func masterFor(addr, key string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	rdb := nodeClient(addr)
	defer rdb.Close()
	slot, err := rdb.ClusterKeySlot(ctx, key).Result()
	if err != nil {
		return "", err
	}
	slots, err := rdb.ClusterSlots(ctx).Result()
	if err != nil {
		return "", err
	}
	for _, s := range slots {
		if int64(s.Start) <= slot && slot <= int64(s.End) {
			return s.Nodes[0].Addr, nil
		}
	}
	return "", fmt.Errorf("slot %d is not served", slot)
}

// nodeClient talks to one node directly, not as a cluster client.
func nodeClient(addr string) *redis.Client {
	return redis.NewClient(&redis.Options{Addr: addr, DialTimeout: time.Second, MaxRetries: -1})
}

// freeClusterPort returns a free port whose cluster bus port (+10000) is free too.
func freeClusterPort(t testing.TB) int {
	t.Helper()
	for range 100 {
		port := freePort(t)
		if port+busOffset > 65535 {
			continue
		}
		bus, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port+busOffset)))
		if err != nil {
			continue
		}
		bus.Close()
		return port
	}
	t.Fatal("redistest: found no free port pair for a cluster node")
	return 0
}
