package systest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/node/accuracy"
)

// LoadTimeout is the default bound on one request of a load run.
const LoadTimeout = 2 * time.Second

// Outcome is one check the load driver sent, stamped with the recorder's clock.
type Outcome struct {
	Node   string
	Sent   time.Duration
	Done   time.Duration
	Status int    // 0 when the request failed without an answer
	Mode   string // the decision's mode, when there was one
	Err    string // why there was no answer (Status 0)
}

// LoadConfig describes a load run.
type LoadConfig struct {
	// Nodes are the targets; worker i always sends to Nodes[i % len(Nodes)],
	// so every node sees the same demand (list a node several times to give
	// it more).
	Nodes []*Proc
	// Workers is how many requests are in flight at once (default 2 per node).
	Workers int
	// Every paces each worker to at most one request per Every (an open
	// loop when requests are faster than that); zero sends back to back.
	Every time.Duration
	// Body is the POST /v1/check body every request sends.
	Body string
	// Bodies, when set, replaces Body: worker i sends Bodies[i % len(Bodies)],
	// so that requests differing in their attributes can land in one bucket
	// (a key-less rule).
	Bodies []string
	// Key names the bucket Body lands in; admits are recorded under it.
	Key string
	// Recorder receives every admitted check, and its clock stamps outcomes.
	Recorder *accuracy.Recorder
	// Timeout bounds one request; a paused node's requests end with it.
	// Zero means LoadTimeout.
	Timeout time.Duration
	// NoHealthCheck keeps sending to a node whose request failed, as a
	// client without health checks does: a restarted node gets traffic from
	// the moment it accepts connections, ready or not.
	NoHealthCheck bool
}

// Load drives POST /v1/check with bounded concurrency until Stop. Like a
// load balancer that health-checks its backends, a worker whose request
// failed sends nothing more to that node until its /readyz answers 200: a
// killed node that restarts gets traffic back once it has its rules.
type Load struct {
	cfg    LoadConfig
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	outcomes []Outcome
}

// StartLoad starts the workers; they stop at Stop or when the test ends.
func StartLoad(t testing.TB, cfg LoadConfig) *Load {
	t.Helper()
	if len(cfg.Nodes) == 0 || cfg.Recorder == nil {
		t.Fatal("systest: StartLoad needs Nodes and a Recorder")
	}
	if cfg.Workers == 0 {
		cfg.Workers = 2 * len(cfg.Nodes)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = LoadTimeout
	}
	ctx, cancel := context.WithCancel(context.Background())
	l := &Load{cfg: cfg, cancel: cancel}
	for i := range cfg.Workers {
		target, body := cfg.Nodes[i%len(cfg.Nodes)], cfg.Body
		if len(cfg.Bodies) > 0 {
			body = cfg.Bodies[i%len(cfg.Bodies)]
		}
		l.wg.Go(func() { l.work(ctx, target, []byte(body)) })
	}
	t.Cleanup(l.Stop)
	return l
}

// Stop ends the load and waits for the workers; safe to call twice.
func (l *Load) Stop() {
	l.cancel()
	l.wg.Wait()
}

// Outcomes returns every outcome so far, in no particular order.
func (l *Load) Outcomes() []Outcome {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Outcome(nil), l.outcomes...)
}

// work sends checks to one node over one keep-alive connection.
func (l *Load) work(ctx context.Context, p *Proc, body []byte) {
	client := &http.Client{
		Timeout:   l.cfg.Timeout,
		Transport: &http.Transport{MaxIdleConnsPerHost: 1, DisableCompression: true},
	}
	defer client.CloseIdleConnections()
	url := p.URL() + "/v1/check"
	var answer struct {
		Mode string `json:"mode"`
	}
	var pace <-chan time.Time
	if l.cfg.Every > 0 {
		tick := time.NewTicker(l.cfg.Every)
		defer tick.Stop()
		pace = tick.C
	}
	for ctx.Err() == nil {
		if pace != nil {
			select {
			case <-ctx.Done():
				return
			case <-pace:
			}
		}
		o := Outcome{Node: p.ID, Sent: l.cfg.Recorder.Now()}
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err == nil {
			raw, readErr := io.ReadAll(resp.Body)
			resp.Body.Close()
			o.Done = l.cfg.Recorder.Now()
			if readErr == nil {
				o.Status = resp.StatusCode
				answer.Mode = ""
				if json.Unmarshal(raw, &answer) == nil {
					o.Mode = answer.Mode
				}
			} else {
				o.Err = readErr.Error()
			}
		} else {
			o.Done = l.cfg.Recorder.Now()
			o.Err = err.Error()
		}
		if ctx.Err() != nil && o.Status == 0 {
			return // cut short by Stop, not by the node
		}
		if o.Status == http.StatusOK {
			l.cfg.Recorder.Record(l.cfg.Key, 1, o.Sent, o.Done)
		}
		l.mu.Lock()
		l.outcomes = append(l.outcomes, o)
		l.mu.Unlock()
		switch {
		case o.Status != 0:
		case l.cfg.NoHealthCheck:
			pause(ctx, 10*time.Millisecond)
		default:
			waitReady(ctx, p)
		}
	}
}

// waitReady polls p's /readyz until it answers 200 or ctx ends.
func waitReady(ctx context.Context, p *Proc) {
	for pause(ctx, 50*time.Millisecond) {
		if p.Ready() == nil {
			return
		}
	}
}

// pause waits d and reports whether ctx is still live.
func pause(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}
