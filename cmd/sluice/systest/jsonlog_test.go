package systest_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/cmd/sluice/systest"
	"github.com/sluicehq/sluice/lua/redistest"
)

// With --log-format json every line the process writes is a JSON record
// with a time, a level and a message — the libraries' output (go-redis,
// raft, gin, net/http, gRPC) included — while Redis goes away and comes
// back, a peer speaks TLS to the plain HTTP port, and the node shuts down.
func TestLogFormatJSONIsOnlyJSON(t *testing.T) {
	redis := redistest.StartServer(t)
	p := systest.StartNode(t, systest.Options{
		Rules: rulesDoc("logs", 1000000), Redis: redis.Addr(), RedisMode: "single",
		Args: []string{"--log-format", "json", "--log-level", "debug", "--grpc-addr", "127.0.0.1:0"},
	})
	p.WaitReady()
	check := func() string {
		_, d := checkUser(t, p, "u1")
		return string(d.Mode)
	}
	check()
	redis.Kill()
	waitFor(t, 20*time.Second, "fallback mode", func() error {
		if m := check(); m != "fallback" {
			return fmt.Errorf("mode %s", m)
		}
		return nil
	})
	// A TLS client on the plain port makes net/http log a bad request.
	if _, err := http.Get("https://" + p.HTTPAddr + "/healthz"); err == nil {
		t.Fatal("https to a plain HTTP port succeeded")
	}
	redis.Start()
	waitFor(t, 30*time.Second, "global mode again", func() error {
		if m := check(); m != "global" {
			return fmt.Errorf("mode %s", m)
		}
		return nil
	})
	if code := p.Stop(); code != 0 {
		t.Fatalf("node exited %d", code)
	}

	f, err := os.Open(p.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	records := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "=== systest:") {
			continue // the harness's own marker
		}
		var rec struct {
			Time  string  `json:"time"`
			Level string  `json:"level"`
			Msg   *string `json:"msg"`
		}
		if err := json.Unmarshal([]byte(line), &rec); err != nil || rec.Time == "" || rec.Level == "" || rec.Msg == nil {
			t.Errorf("not a JSON log record: %q", line)
			continue
		}
		records++
	}
	if records < 5 {
		t.Errorf("only %d log records; the node should have logged its start, fallback, recovery and shutdown", records)
	}
}
