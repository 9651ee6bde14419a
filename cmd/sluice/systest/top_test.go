package systest_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/api/admin"
	"github.com/sluicehq/sluice/api/top"
	"github.com/sluicehq/sluice/cmd/sluice/systest"
)

// tally is what the test saw per key: admitted and denied answers, and the
// nodes that decided them.
type tally struct {
	admitted, denied int64
	nodes            []string
}

// TestTopMergesThreeNodes drives skewed traffic, mostly denied, at three
// real nodes (one attacker at two of them, another at the third, a tail of
// one-off keys everywhere) and checks that GET /v1/top on any node merges
// the three nodes' counts exactly (few keys: no summary is full, so every
// count is exact, error 0), names the nodes that saw each key, and that
// `sluice top --once` prints the same; then a killed node is listed as
// missing.
func TestTopMergesThreeNodes(t *testing.T) {
	const token = "top-token"
	opts := systest.Options{AdminToken: token,
		Rules: `{"rules": [{"name": "login", "key": ["ip"], "limit": {"rate": 1, "per": "1h", "burst": 3}}]}`}
	c := systest.StartCluster(t, opts, opts, opts)
	n1, n2, n3 := c.Nodes[0], c.Nodes[1], c.Nodes[2]
	seen := map[string]*tally{}
	send := func(p *systest.Proc, ip string, times int) {
		for range times {
			status, d := decide(t, p, fmt.Sprintf(`{"attributes": {"ip": %q}}`, ip))
			tl := seen[ip]
			if tl == nil {
				tl = &tally{}
				seen[ip] = tl
			}
			switch {
			case status == http.StatusOK && d.Allowed:
				tl.admitted++
			case status == http.StatusTooManyRequests:
				tl.denied++
			default:
				t.Fatalf("check of %s on %s: %d %+v", ip, p.ID, status, d)
			}
			if !slices.Contains(tl.nodes, p.ID) {
				tl.nodes = append(tl.nodes, p.ID)
			}
		}
	}
	send(n1, "203.0.113.7", 40)
	send(n2, "203.0.113.7", 25)
	send(n3, "198.51.100.9", 30)
	for i, p := range c.Nodes {
		for j := range 5 {
			send(p, fmt.Sprintf("192.0.2.%d", 10*i+j), 1)
		}
	}
	var admitted, denied int64
	for _, tl := range seen {
		admitted, denied = admitted+tl.admitted, denied+tl.denied
		slices.Sort(tl.nodes)
	}

	var got admin.Top
	waitFor(t, 30*time.Second, "every decision in the merged 1m window", func() error {
		var err error
		got, err = topOf(n2, token, top.Query{Rule: "login", Window: "1m", K: 20})
		switch {
		case err != nil:
			return err
		case len(got.Rules) != 1 || got.Rules[0].Denied != denied || got.Rules[0].Admitted != admitted:
			return fmt.Errorf("answer %+v; the test saw %d admitted and %d denied", got, admitted, denied)
		}
		return nil
	})
	if fmt.Sprint(got.Nodes, got.Missing) != "[n1 n2 n3] []" || got.Window != "1m" || got.By != "denied" {
		t.Fatalf("answer %+v", got)
	}
	keys := got.Rules[0].Keys
	if len(keys) < 2 || keys[0].Key != "203.0.113.7" || keys[1].Key != "198.51.100.9" {
		t.Fatalf("keys by denied cost: %+v, want the two attackers first", keys)
	}
	for i, k := range keys {
		tl := seen[k.Key]
		if tl == nil || k.Denied != tl.denied || k.Admitted != tl.admitted || k.Error != 0 || !slices.Equal(k.Nodes, tl.nodes) {
			t.Errorf("key %+v; the test saw %+v", k, tl)
		}
		if i > 0 && k.Denied > keys[i-1].Denied {
			t.Errorf("keys not sorted by denied: %+v", keys)
		}
	}

	// The CLI prints the same merge, over the token.
	code, out, errOut := runCLI(t, nil, "top", "--once", "--window", "1m", "--addr", n3.URL(), "--token", token)
	attacker := seen["203.0.113.7"]
	row := fmt.Sprintf("203.0.113.7 %d 0 %d n1,n2", attacker.denied, attacker.admitted)
	if code != 0 || !strings.Contains(out, "nodes n1,n2,n3") || !strings.Contains(strings.Join(strings.Fields(out), " "), row) {
		t.Fatalf("sluice top --once: exit %d, want a row %q\n%s%s", code, row, out, errOut)
	}
	if code, _, errOut := runCLI(t, nil, "top", "--once", "--addr", n3.URL()); code != 1 || !strings.Contains(errOut, "unauthorized") {
		t.Errorf("sluice top without the token: exit %d, stderr %q; want 1, unauthorized", code, errOut)
	}

	// Without --once it redraws every --interval until interrupted.
	live := exec.Command(systest.Binary(t), "top", "--interval", "200ms", "--addr", n1.URL(), "--token", token)
	var screen lockedBuffer
	live.Stdout, live.Stderr = &screen, &screen
	if err := live.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "sluice top redrawing", func() error {
		if n := strings.Count(screen.String(), "\x1b[H\x1b[2J"); n < 3 || !strings.Contains(screen.String(), "login") {
			return fmt.Errorf("%d screens so far:\n%s", n, screen.String())
		}
		return nil
	})
	live.Process.Signal(os.Interrupt)
	if err := live.Wait(); err != nil {
		t.Fatalf("sluice top after Ctrl-C: %v\n%s", err, screen.String())
	}

	// scope=local answers from the node asked only.
	local, err := topOf(n3, token, top.Query{Rule: "login", Window: "1m", K: 1, Local: true})
	if err != nil || fmt.Sprint(local.Nodes) != "[n3]" || len(local.Rules[0].Keys) != 1 || local.Rules[0].Keys[0].Key != "198.51.100.9" {
		t.Fatalf("scope=local on n3: %+v %v", local, err)
	}

	n3.Kill()
	waitFor(t, 20*time.Second, "the killed node listed as missing", func() error {
		got, err := topOf(n1, token, top.Query{Window: "1m"})
		if err != nil || fmt.Sprint(got.Nodes, got.Missing) != "[n1 n2] [n3]" {
			return fmt.Errorf("%+v %v", got, err)
		}
		return nil
	})
}

// lockedBuffer collects a child process's output while the test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func topOf(p *systest.Proc, token string, q top.Query) (admin.Top, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return p.Client(token).Top(ctx, q)
}
