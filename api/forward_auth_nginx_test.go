package api_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/api"
	"github.com/sluicehq/sluice/api/clientip"
	"github.com/sluicehq/sluice/fsm/rules"
	"github.com/sluicehq/sluice/node/engine"
)

// nginxConf is the configuration docs/INTEGRATIONS.md shows; the test runs
// it verbatim except for the three addresses below.
const nginxConf = "testdata/nginx/sluice.conf"

// The addresses in nginxConf that the test points at its own servers.
const (
	confSluiceAddr = "server 127.0.0.1:8000;"
	confAppAddr    = "server 127.0.0.1:9000;"
	confListen     = "listen 8080;"
)

const nginxRules = `{"rules": [
	{"name": "per-ip", "match": {"route": "/api/*"}, "key": ["ip"], "limit": {"rate": 1, "per": "1h", "burst": 3}}]}`

// startNginx runs nginx with nginxConf in front of sluiceAddr and appAddr
// and returns the address it listens on.
func startNginx(t *testing.T, sluiceAddr, appAddr string) string {
	t.Helper()
	bin, err := exec.LookPath("nginx")
	if err != nil {
		bin = "/usr/sbin/nginx"
		if _, statErr := os.Stat(bin); statErr != nil {
			t.Fatal("nginx not found: install nginx-light (.ci/run does when it is absent)")
		}
	}
	conf, err := os.ReadFile(nginxConf)
	if err != nil {
		t.Fatal(err)
	}
	listen := freeLoopbackAddr(t)
	site := string(conf)
	for _, r := range []struct{ from, to string }{
		{confSluiceAddr, "server " + sluiceAddr + ";"},
		{confAppAddr, "server " + appAddr + ";"},
		{confListen, "listen " + listen + ";"},
	} {
		if !strings.Contains(site, r.from) {
			t.Fatalf("%s no longer contains %q", nginxConf, r.from)
		}
		site = strings.ReplaceAll(site, r.from, r.to)
	}

	dir := t.TempDir()
	user := ""
	if os.Geteuid() == 0 { // workers would otherwise run as nobody, locked out of dir
		user = "user root;"
	}
	mainConf := fmt.Sprintf(`%[2]s
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 128; }
http {
    access_log %[1]s/access.log;
    client_body_temp_path %[1]s/client_body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    include %[1]s/sluice.conf;
}
`, dir, user)
	for name, body := range map[string]string{"nginx.conf": mainConf, "sluice.conf": site} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(bin, "-p", dir, "-c", filepath.Join(dir, "nginx.conf"), "-g", "daemon off;")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt) // fast shutdown
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", listen, time.Second)
		if err == nil {
			conn.Close()
			return listen
		}
		select {
		case err := <-exited:
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Fatalf("nginx exited (%v):\n%s", err, log)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Fatalf("nginx not listening on %s after 15s:\n%s", listen, log)
		}
	}
}

func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// clientFrom is an HTTP client whose connections come from the loopback
// address source, so nginx sees distinct clients.
func clientFrom(source string) *http.Client {
	dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(source)}, Timeout: 5 * time.Second}
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				return dialer.DialContext(ctx, network, addr)
			},
		},
	}
}

type proxied struct {
	status int
	header http.Header
	body   string
}

func getThrough(t *testing.T, c *http.Client, url string, headers ...string) proxied {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return proxied{resp.StatusCode, resp.Header, string(body)}
}

func TestNginxAuthRequest(t *testing.T) {
	set, err := rules.Parse([]byte(nginxRules))
	if err != nil {
		t.Fatal(err)
	}
	engine := engine.New()
	engine.SetRules(1, set)
	// nginx connects to Sluice from 127.0.0.1; the clients use other
	// loopback addresses, which must not be trusted.
	trusted, err := clientip.Parse("127.0.0.1/32")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := api.NewServer(api.Config{Engine: engine, TrustedProxies: trusted})
	if err != nil {
		t.Fatal(err)
	}
	sluice := httptest.NewServer(srv.Handler())
	t.Cleanup(sluice.Close)

	var served atomic.Int64
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		fmt.Fprintf(w, "app: %s", r.URL.Path)
	}))
	t.Cleanup(app.Close)

	proxy := "http://" + startNginx(t, sluice.Listener.Addr().String(), app.Listener.Addr().String())

	alice, bob, mallory := clientFrom("127.0.0.2"), clientFrom("127.0.0.3"), clientFrom("127.0.0.4")
	for i := 0; i < 3; i++ {
		got := getThrough(t, alice, proxy+"/api/orders?page=1")
		if got.status != http.StatusOK || got.body != "app: /api/orders" {
			t.Fatalf("alice request %d: %d %q", i, got.status, got.body)
		}
		if got.header.Get("X-RateLimit-Limit") != "1" || got.header.Get("X-RateLimit-Remaining") != fmt.Sprint(2-i) {
			t.Fatalf("alice request %d headers %v", i, got.header)
		}
	}
	limited := getThrough(t, alice, proxy+"/api/orders")
	if limited.status != http.StatusTooManyRequests || limited.header.Get("X-RateLimit-Remaining") != "0" ||
		limited.header.Get("X-RateLimit-Limit") != "1" || !strings.Contains(limited.body, "Too Many Requests") {
		t.Fatalf("alice's 4th request: %d %v %q, want 429", limited.status, limited.header, limited.body)
	}
	if retry := limited.header.Get("Retry-After"); retry == "" || retry == "0" {
		t.Fatalf("429 without a Retry-After: %v", limited.header)
	}
	if got := getThrough(t, alice, proxy+"/public"); got.status != http.StatusOK {
		t.Fatalf("alice on an unlimited route: %d", got.status)
	}
	if got := getThrough(t, bob, proxy+"/api/orders"); got.status != http.StatusOK {
		t.Fatalf("bob limited by alice's requests: %d", got.status)
	}

	// Mallory forges a fresh address, X-Real-IP and key attribute each time;
	// Sluice still keys her on the address nginx saw.
	mallorys := map[int]int{}
	for i := 0; i < 6; i++ {
		got := getThrough(t, mallory, proxy+"/api/orders",
			"X-Forwarded-For", fmt.Sprintf("198.51.100.%d", i),
			"X-Real-IP", fmt.Sprintf("192.0.2.%d", i),
			"X-Sluice-Ip", fmt.Sprintf("203.0.113.%d", i))
		mallorys[got.status]++
	}
	if mallorys[http.StatusOK] != 3 || mallorys[http.StatusTooManyRequests] != 3 {
		t.Fatalf("forging client got %v, want 3 allowed and 3 limited like everyone else", mallorys)
	}
	// Allowed: alice 3 + /public 1, bob 1, mallory 3.
	if n := served.Load(); n != 8 {
		t.Fatalf("app served %d requests, want 8 (no denied request may reach it)", n)
	}
}

// TestIntegrationsDocShowsTestedNginxConfig keeps the documented nginx
// configuration the one this test runs.
func TestIntegrationsDocShowsTestedNginxConfig(t *testing.T) {
	conf, err := os.ReadFile(nginxConf)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile("../docs/INTEGRATIONS.md")
	if errors.Is(err, os.ErrNotExist) {
		t.Fatal("docs/INTEGRATIONS.md is missing")
	}
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(doc), "```nginx\n"+string(conf)+"```") {
		t.Fatalf("docs/INTEGRATIONS.md does not show %s verbatim in an nginx code block", nginxConf)
	}
}
