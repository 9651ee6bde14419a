package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

// runHealth asks a node whether it is up (GET /healthz) or ready (--ready,
// GET /readyz): exit 0 on 200, 1 otherwise. It is the container health check,
// so it needs nothing from the image but the binary itself.
func runHealth(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("health", stdout, stderr)
	addr := fs.String("addr", "", "node HTTP address [http://127.0.0.1 on the port of SLUICE_HTTP_ADDR, else :8000]")
	ready := fs.Bool("ready", false, "check /readyz (has rules, knows a leader) instead of /healthz")
	timeout := fs.Duration("timeout", 2*time.Second, "give up after this long")
	var tlsFlags clientTLSFlags
	tlsFlags.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return flagExit(err)
	}
	tlsConfig, err := tlsFlags.config()
	if err != nil {
		fmt.Fprintf(stderr, "sluice health: %v\n", err)
		return 2
	}
	target := *addr
	if target == "" {
		target = localHTTPAddr(os.Getenv(envName("http-addr")))
	}
	if !strings.Contains(target, "://") {
		target = "http://" + target
	}
	path := "/healthz"
	if *ready {
		path = "/readyz"
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(target, "/")+path, nil)
	if err != nil {
		fmt.Fprintf(stderr, "sluice health: %v\n", err)
		return 2
	}
	resp, err := (&http.Client{Transport: &http.Transport{TLSClientConfig: tlsConfig}}).Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "sluice health: %v\n", err)
		return 1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	fmt.Fprintf(stdout, "%s %s\n", resp.Status, strings.TrimSpace(string(body)))
	if resp.StatusCode != http.StatusOK {
		return 1
	}
	return 0
}

// localHTTPAddr turns a serve --http-addr (":8000", "0.0.0.0:9000") into an
// address this host can dial; empty or unparsable means the default :8000.
func localHTTPAddr(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "127.0.0.1:8000"
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}
