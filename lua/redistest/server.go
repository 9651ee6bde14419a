// Package redistest runs real redis-server processes, standalone or as a 6-node Redis
// Cluster, for tests that must show Sluice's safety promise against the real thing rather
// than a fake: Lua semantics, Redis TIME, cluster slots, restarts and failovers.
package redistest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// startTimeout bounds how long a redis-server may take to answer PING after launch.
const startTimeout = 10 * time.Second

// Server is one redis-server process on 127.0.0.1 without persistence, so a restart
// loses its data like a crash would. Its methods must be called from the test goroutine.
type Server struct {
	t         testing.TB
	dir       string
	port      int
	extraArgs []string
	proc      *process
	tls       *tls.Config // non-nil: the server speaks TLS only
}

// StartServer starts a standalone redis-server on a free port and stops it when the test ends.
func StartServer(t testing.TB) *Server {
	t.Helper()
	return startServer(t, t.TempDir(), freePort, nil)
}

// StartTLSServer starts a standalone redis-server that accepts only TLS
// connections on its port, presenting certFile (key in keyFile), and
// returns it with the client TLS configuration that trusts caFile.
func StartTLSServer(t testing.TB, certFile, keyFile, caFile string) *Server {
	t.Helper()
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	return launchNew(t, &Server{t: t, dir: t.TempDir(), tls: &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"}, extraArgs: []string{
		"--tls-cert-file", certFile, "--tls-key-file", keyFile, "--tls-ca-cert-file", caFile,
		"--tls-auth-clients", "no",
	}}, freePort)
}

// startServer launches redis-server with extraArgs on a port from pick, trying other
// ports when the chosen one was taken in the meantime.
func startServer(t testing.TB, dir string, pick func(testing.TB) int, extraArgs []string) *Server {
	t.Helper()
	return launchNew(t, &Server{t: t, dir: dir, extraArgs: extraArgs}, pick)
}

// launchNew starts s on a port from pick, retrying with other ports.
func launchNew(t testing.TB, s *Server, pick func(testing.TB) int) *Server {
	t.Helper()
	requireBinary(t, "redis-server")
	t.Cleanup(s.Kill)
	var err error
	for range 5 {
		s.port = pick(t)
		if err = s.launch(); err == nil {
			return s
		}
	}
	t.Fatalf("redistest: starting redis-server: %v", err)
	return nil
}

// Addr is the server's host:port.
func (s *Server) Addr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
}

// Start restarts a stopped or killed server on the same port, empty.
func (s *Server) Start() {
	s.t.Helper()
	if s.proc != nil && !s.proc.exited() {
		s.t.Fatalf("redistest: %s is already running", s.Addr())
	}
	if err := s.launch(); err != nil {
		s.t.Fatalf("redistest: restarting %s: %v", s.Addr(), err)
	}
}

// Stop shuts the server down with SIGTERM, as an operator would, and waits for it to exit.
func (s *Server) Stop() {
	s.stop(syscall.SIGTERM)
}

// Kill ends the server with SIGKILL, like a crash, and waits for it to exit.
func (s *Server) Kill() {
	s.stop(syscall.SIGKILL)
}

func (s *Server) stop(sig syscall.Signal) {
	if s.proc == nil || s.proc.exited() {
		return
	}
	if err := s.proc.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		s.t.Errorf("redistest: signalling %s: %v", s.Addr(), err)
	}
	select {
	case <-s.proc.done:
	case <-time.After(startTimeout):
		s.proc.cmd.Process.Kill()
		<-s.proc.done
	}
}

func (s *Server) launch() error {
	port := []string{"--port", strconv.Itoa(s.port)}
	if s.tls != nil {
		port = []string{"--port", "0", "--tls-port", strconv.Itoa(s.port)}
	}
	args := append(append(port, "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", s.dir,
	), s.extraArgs...)
	logPath := filepath.Join(s.dir, "redis-"+strconv.Itoa(s.port)+".log")
	proc, err := startProcess(logPath, "redis-server", args...)
	if err != nil {
		return err
	}
	s.proc = proc
	rdb := redis.NewClient(&redis.Options{Addr: s.Addr(), DialTimeout: time.Second, MaxRetries: -1, TLSConfig: s.tls})
	defer rdb.Close()
	deadline := time.Now().Add(startTimeout)
	for {
		if proc.exited() {
			return fmt.Errorf("redis-server on %s exited: %s", s.Addr(), logTail(logPath))
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		pid, err := serverPID(ctx, rdb)
		cancel()
		// Another process may have grabbed the port first; only our own answer counts.
		if err == nil && pid == proc.cmd.Process.Pid {
			return nil
		}
		if time.Now().After(deadline) {
			s.Kill()
			return fmt.Errorf("redis-server on %s did not answer within %v: %v; %s", s.Addr(), startTimeout, err, logTail(logPath))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// serverPID asks a server for its process id.
func serverPID(ctx context.Context, rdb *redis.Client) (int, error) {
	info, err := rdb.Info(ctx, "server").Result()
	if err != nil {
		return 0, err
	}
	v, ok := infoField(info, "process_id")
	if !ok {
		return 0, errors.New("INFO server has no process_id")
	}
	return strconv.Atoi(v)
}

// infoField finds "name:value" in an INFO reply.
func infoField(info, name string) (string, bool) {
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
			return v, true
		}
	}
	return "", false
}

// process is a child process whose exit is observed by one waiting goroutine.
type process struct {
	cmd  *exec.Cmd
	done chan struct{}
}

func startProcess(logPath, name string, args ...string) (*process, error) {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, err
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		cmd.Wait()
		logFile.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// logTail returns the end of a server log, for error messages.
func logTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "no log: " + err.Error()
	}
	const keep = 2000
	if len(b) > keep {
		b = b[len(b)-keep:]
	}
	return "log tail:\n" + string(b)
}

// requireBinary fails the test when a Redis tool is missing: these tests must never pass
// by not running.
func requireBinary(t testing.TB, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Fatalf("redistest: %s not found in PATH: install Redis >= 7 "+
			"(Debian/Ubuntu: apt-get install redis-server, which also provides redis-cli; "+
			"Alpine: apk add redis; macOS: brew install redis)", name)
	}
}

// freePort returns a TCP port that was free on 127.0.0.1 a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("redistest: finding a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
