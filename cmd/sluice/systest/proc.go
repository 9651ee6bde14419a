package systest

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sluicehq/sluice/api/client"
	"github.com/sluicehq/sluice/transport/faultproxy"
)

// Options describes one node. The harness chooses the node's ports, data
// directory and raft address; everything else comes from here.
type Options struct {
	// ID is the node id; empty means a generated "nodeN".
	ID string
	// Join lists HTTP addresses of existing members (--join).
	Join []string
	// Rules is a rules document for --rules; empty passes no --rules (the
	// node starts in an empty directory, so it has no default rules either).
	Rules string
	// Redis is passed as --redis when set.
	Redis string
	// RedisMode is passed as --redis-mode when set. Tests name the mode:
	// "auto" asks Redis with --redis-timeout at start, which a loaded
	// machine can miss.
	RedisMode string
	// AdminToken is passed as --admin-token when set.
	AdminToken string
	// RaftProxy puts a faultproxy in front of the node's raft port and
	// advertises the proxy, so a test can cut the node's inbound raft traffic.
	RaftProxy bool
	// FlagsViaEnv passes the harness's flags as SLUICE_* environment
	// variables instead of command-line flags.
	FlagsViaEnv bool
	// HTTPS says the node serves its API over TLS (the test passes
	// --http-cert in Args); the harness then calls it with the settings of
	// UseTLS.
	HTTPS bool
	// Args are extra command-line arguments after `serve`.
	Args []string
	// Env are extra KEY=VALUE environment entries.
	Env []string
}

// Proc is one `sluice serve` process. Its methods must be called from the
// test goroutine unless noted.
type Proc struct {
	t        testing.TB
	ID       string
	HTTPAddr string // host:port the node listens on for HTTP
	RaftAddr string // host:port the node listens on for raft
	// RaftProxy is the proxy in front of RaftAddr when Options.RaftProxy is set.
	RaftProxy *faultproxy.Proxy
	DataDir   string
	LogPath   string

	scheme string
	args   []string
	env    []string

	mu     sync.Mutex // guards the fields below; the waiter goroutine writes them
	cmd    *exec.Cmd
	done   chan struct{}
	exit   int
	paused bool
}

// readyTimeout bounds how long a node may take to become ready. Raft runs with
// production timings (1 s heartbeat) on a loaded 2-core machine.
const readyTimeout = 30 * time.Second

// nodeCount numbers nodes started without an id.
var nodeCount atomic.Int64

// StartNode starts a node and returns without waiting for it to be ready.
func StartNode(t testing.TB, opts Options) *Proc {
	t.Helper()
	bin := Binary(t)
	dir := t.TempDir()
	if opts.ID == "" {
		opts.ID = fmt.Sprintf("node%d", nodeCount.Add(1))
	}
	p := &Proc{
		t:        t,
		ID:       opts.ID,
		HTTPAddr: freeAddr(t),
		RaftAddr: freeAddr(t),
		DataDir:  filepath.Join(dir, "data"),
		LogPath:  filepath.Join(dir, opts.ID+".log"),
		scheme:   "http",
	}
	if opts.HTTPS {
		p.scheme = "https"
	}
	flags := map[string]string{
		"node-id":   p.ID,
		"data-dir":  p.DataDir,
		"http-addr": p.HTTPAddr,
		"raft-addr": p.RaftAddr,
	}
	if opts.RaftProxy {
		p.RaftProxy = faultproxy.Start(t, p.RaftAddr)
		flags["raft-advertise"] = p.RaftProxy.Addr()
	}
	if len(opts.Join) > 0 {
		flags["join"] = strings.Join(opts.Join, ",")
	}
	if opts.Rules != "" {
		path := filepath.Join(dir, "rules.json")
		if err := os.WriteFile(path, []byte(opts.Rules), 0o644); err != nil {
			t.Fatalf("systest: %v", err)
		}
		flags["rules"] = path
	}
	if opts.Redis != "" {
		flags["redis"] = opts.Redis
	}
	if opts.RedisMode != "" {
		flags["redis-mode"] = opts.RedisMode
	}
	if opts.AdminToken != "" {
		flags["admin-token"] = opts.AdminToken
	}
	p.args = append([]string{bin, "serve"}, opts.Args...)
	p.env = append(os.Environ(), opts.Env...)
	for name, value := range flags {
		if opts.FlagsViaEnv {
			p.env = append(p.env, EnvName(name)+"="+value)
		} else {
			p.args = append(p.args, "--"+name+"="+value)
		}
	}
	// Registered after t.TempDir, so it runs before the directory is removed.
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("systest: log of node %s (%s):\n%s", p.ID, p.LogPath, p.LogTail(8000))
		}
	})
	p.launch()
	return p
}

// EnvName is the environment variable sluice reads for a flag.
func EnvName(flag string) string {
	return "SLUICE_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// launch starts the process with the node's fixed args, appending to its log.
func (p *Proc) launch() {
	p.t.Helper()
	logFile, err := os.OpenFile(p.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		p.t.Fatalf("systest: %v", err)
	}
	fmt.Fprintf(logFile, "=== systest: starting %s\n", strings.Join(p.args, " "))
	cmd := &exec.Cmd{Path: p.args[0], Args: p.args, Env: p.env, Dir: filepath.Dir(p.LogPath),
		Stdout: logFile, Stderr: logFile, SysProcAttr: sysProcAttr()}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		p.t.Fatalf("systest: starting node %s: %v", p.ID, err)
	}
	done := make(chan struct{})
	p.mu.Lock()
	p.cmd, p.done, p.exit, p.paused = cmd, done, -1, false
	p.mu.Unlock()
	go func() {
		err := cmd.Wait()
		logFile.Close()
		code := cmd.ProcessState.ExitCode()
		var exitErr *exec.ExitError
		if err != nil && !errors.As(err, &exitErr) {
			code = -1
		}
		p.mu.Lock()
		p.exit = code
		p.mu.Unlock()
		close(done)
	}()
}

// URL is the node's HTTP base URL.
func (p *Proc) URL() string { return p.scheme + "://" + p.HTTPAddr }

// Client is an API client for the node, with token as the admin token.
func (p *Proc) Client(token string) *client.Client {
	return client.New(p.URL(), client.WithToken(token), client.WithTLSConfig(clientTLS()))
}

// Reload sends the node SIGHUP: reload its certificates.
func (p *Proc) Reload() { p.signal(syscall.SIGHUP) }

// Running reports whether the process has not exited (a paused one runs).
func (p *Proc) Running() bool {
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	select {
	case <-done:
		return false
	default:
		return true
	}
}

// Paused reports whether the process was stopped with Pause.
func (p *Proc) Paused() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.paused
}

// Ready asks GET /readyz once: nil when it answers 200.
func (p *Proc) Ready() error {
	status, body, err := Get(p.URL() + "/readyz")
	if err != nil {
		return err
	}
	if status != http.StatusOK {
		return fmt.Errorf("readyz %d: %s", status, body)
	}
	return nil
}

// WaitReady waits until /readyz answers 200, failing the test if the node
// exits or is not ready within 30 s.
func (p *Proc) WaitReady() {
	p.t.Helper()
	deadline := time.Now().Add(readyTimeout)
	for {
		err := p.Ready()
		if err == nil {
			return
		}
		if !p.Running() {
			p.t.Fatalf("systest: node %s exited (code %d) before it was ready: %v", p.ID, p.ExitCode(), err)
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("systest: node %s not ready after %v: %v", p.ID, readyTimeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ExitCode is the process's exit code, or -1 while it runs or when a signal
// ended it.
func (p *Proc) ExitCode() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.exit
}

// Kill ends the process with SIGKILL, like a crash, and waits for it.
func (p *Proc) Kill() {
	p.t.Helper()
	p.signal(syscall.SIGKILL)
	p.wait(10 * time.Second)
}

// Stop sends SIGTERM, waits up to 30 s for a clean exit and returns the
// exit code. A node that does not exit in time fails the test and is killed.
func (p *Proc) Stop() int {
	p.t.Helper()
	p.Resume()
	p.signal(syscall.SIGTERM)
	if !p.wait(30 * time.Second) {
		p.t.Errorf("systest: node %s ignored SIGTERM for 30s; killing it", p.ID)
		p.kill()
	}
	return p.ExitCode()
}

// Pause stops the process with SIGSTOP: it holds its sockets but runs no code.
func (p *Proc) Pause() {
	p.t.Helper()
	p.signal(syscall.SIGSTOP)
	p.mu.Lock()
	p.paused = true
	p.mu.Unlock()
}

// Resume continues a paused process with SIGCONT.
func (p *Proc) Resume() {
	p.t.Helper()
	if !p.Paused() {
		return
	}
	p.signal(syscall.SIGCONT)
	p.mu.Lock()
	p.paused = false
	p.mu.Unlock()
}

// Restart starts an exited node again with the same id, ports, data
// directory and flags, and returns without waiting for it to be ready.
func (p *Proc) Restart() {
	p.t.Helper()
	if p.Running() {
		p.t.Fatalf("systest: node %s is still running; Kill or Stop it first", p.ID)
	}
	p.launch()
}

// LogTail returns up to the last n bytes of the node's log.
func (p *Proc) LogTail(n int) string {
	b, err := os.ReadFile(p.LogPath)
	if err != nil {
		return "no log: " + err.Error()
	}
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

func (p *Proc) signal(sig syscall.Signal) {
	p.t.Helper()
	p.mu.Lock()
	proc := p.cmd.Process
	p.mu.Unlock()
	if err := proc.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		p.t.Errorf("systest: signalling node %s: %v", p.ID, err)
	}
}

// wait waits up to timeout for the process to exit.
func (p *Proc) wait(timeout time.Duration) bool {
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	select {
	case <-done:
		return true
	case <-time.After(timeout):
		return false
	}
}

// kill ends the process whatever its state; safe to call more than once.
func (p *Proc) kill() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return // never started
	}
	_ = cmd.Process.Kill() // SIGKILL ends a stopped process too
	<-done
}

// freeAddr returns a 127.0.0.1 address whose port was free a moment ago.
// It picks below the kernel's usual ephemeral range (32768 and up), where
// the test's own outgoing connections and other port-0 listeners would
// otherwise take the port before the node binds it.
func freeAddr(t testing.TB) string {
	t.Helper()
	for range 100 {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(20000+rand.IntN(12000)))
		ln, err := net.Listen("tcp", addr)
		if err == nil {
			ln.Close()
			return addr
		}
	}
	t.Fatal("systest: no free port found")
	return ""
}
