package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// liveNode is a node run in-process through serve(), the wiring of
// `sluice serve`, so tests see exactly the metrics, routes and shutdown the
// binary has.
type liveNode struct {
	url  string
	logs *syncBuffer
	stop func() error
}

// startLiveNode runs a single bootstrapping node on free loopback ports with
// the sample rules, plus extra serve flags, and waits until it is ready.
func startLiveNode(t *testing.T, extra ...string) *liveNode {
	t.Helper()
	n := launchLiveNode(t, extra...)
	pollUntil(t, 20*time.Second, "node ready", func() bool { return httpStatus(n.url+"/readyz") == http.StatusOK })
	return n
}

// launchLiveNode is startLiveNode without waiting for readiness: it returns
// once the node serves HTTP.
func launchLiveNode(t *testing.T, extra ...string) *liveNode {
	t.Helper()
	fs := newFlagSet("serve", io.Discard, io.Discard)
	var f serveFlags
	f.register(fs)
	args := append([]string{
		"--node-id", "n1", "--data-dir", t.TempDir(),
		"--http-addr", "127.0.0.1:0", "--raft-addr", "127.0.0.1:0",
		"--rules", "../../testdata/rules.json",
	}, extra...)
	if err := parseFlags(fs, args); err != nil {
		t.Fatalf("serve flags %v: %v", args, err)
	}
	logs := &syncBuffer{}
	logger, err := newLogger(logs, "info", "json")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, f, logger) }()
	var once sync.Once
	var stopErr error
	n := &liveNode{logs: logs, stop: func() error {
		once.Do(func() {
			cancel()
			select {
			case stopErr = <-done:
			case <-time.After(30 * time.Second):
				stopErr = errors.New("serve did not return within 30s of its context ending")
			}
		})
		return stopErr
	}}
	t.Cleanup(func() {
		if err := n.stop(); err != nil {
			t.Errorf("node shutdown: %v", err)
		}
		if t.Failed() {
			t.Logf("node logs:\n%s", logs.String())
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for n.url == "" {
		if time.Now().After(deadline) {
			t.Fatalf("node never logged its HTTP address; logs:\n%s", logs.String())
		}
		select {
		case err := <-done:
			t.Fatalf("serve returned early: %v; logs:\n%s", err, logs.String())
		case <-time.After(10 * time.Millisecond):
		}
		n.url = servingAddr(logs.String())
	}
	n.url = "http://" + n.url
	return n
}

// servingAddr finds the HTTP address in the "sluice serving" log line.
func servingAddr(logs string) string {
	sc := bufio.NewScanner(strings.NewReader(logs))
	for sc.Scan() {
		var line struct {
			Msg  string `json:"msg"`
			HTTP string `json:"http"`
		}
		if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "sluice serving" {
			return line.HTTP
		}
	}
	return ""
}

// pollUntil polls cond until it holds, failing the test after limit.
func pollUntil(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", limit, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func httpStatus(url string) int {
	resp, err := http.Get(url)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// scrapeText returns the node's /metrics exposition.
func scrapeText(t *testing.T, baseURL string) []byte {
	t.Helper()
	resp, err := http.Get(baseURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %d, %v", resp.StatusCode, err)
	}
	return body
}

// scrape parses the node's /metrics into metric families by name.
func scrape(t *testing.T, baseURL string) map[string]*dto.MetricFamily {
	t.Helper()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(scrapeText(t, baseURL)))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return families
}

// counterSum adds up a counter family's series whose labels include want.
func counterSum(families map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	var sum float64
	fam := families[name]
	if fam == nil {
		return 0
	}
next:
	for _, m := range fam.GetMetric() {
		for k, v := range want {
			found := false
			for _, lp := range m.GetLabel() {
				if lp.GetName() == k && lp.GetValue() == v {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		sum += m.GetCounter().GetValue()
	}
	return sum
}

// syncBuffer is a log sink the node writes while the test reads.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
