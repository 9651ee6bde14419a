package faultproxy

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// startEcho runs a line echo server until the test ends.
func startEcho(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// roundTrip sends a line and reads it back within timeout.
func roundTrip(c net.Conn, msg string, timeout time.Duration) (string, error) {
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := io.WriteString(c, msg+"\n"); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSuffix(line, "\n"), err
}

func TestForwardsBothWays(t *testing.T) {
	p := Start(t, startEcho(t))
	c := dial(t, p.Addr())
	for _, msg := range []string{"hello", "again"} {
		got, err := roundTrip(c, msg, 2*time.Second)
		if err != nil || got != msg {
			t.Fatalf("round trip %q = %q, %v", msg, got, err)
		}
	}
}

func TestBlackholeCutsLiveConnectionsAndHangsNewOnes(t *testing.T) {
	p := Start(t, startEcho(t))
	live := dial(t, p.Addr())
	if _, err := roundTrip(live, "up", 2*time.Second); err != nil {
		t.Fatal(err)
	}
	p.Blackhole()
	if _, err := roundTrip(live, "cut", 2*time.Second); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("live connection after Blackhole: err = %v, want it closed promptly", err)
	}
	fresh := dial(t, p.Addr()) // accepted...
	if _, err := roundTrip(fresh, "lost", 200*time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("new connection during Blackhole: err = %v, want a timeout", err)
	}
}

func TestRefuseClosesNewConnectionsAtOnce(t *testing.T) {
	p := Start(t, startEcho(t))
	p.Refuse()
	c := dial(t, p.Addr())
	if _, err := roundTrip(c, "no", 2*time.Second); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("connection during Refuse: err = %v, want it closed promptly", err)
	}
}

func TestRestoreForwardsNewConnectionsAndDropsHangingOnes(t *testing.T) {
	p := Start(t, startEcho(t))
	p.Cut()
	hanging := dial(t, p.Addr())
	waitHeld(t, p)
	p.Restore()
	if _, err := roundTrip(hanging, "stuck", 2*time.Second); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("connection accepted while blackholed, after Restore: err = %v, want it closed promptly", err)
	}
	got, err := roundTrip(dial(t, p.Addr()), "back", 2*time.Second)
	if err != nil || got != "back" {
		t.Fatalf("after Restore: %q, %v", got, err)
	}
}

// waitHeld waits until the proxy has accepted a connection into the blackhole.
func waitHeld(t *testing.T, p *Proxy) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		p.mu.Lock()
		n := len(p.held)
		p.mu.Unlock()
		if n > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the blackholed connection was never accepted")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestSetDelaySlowsTraffic(t *testing.T) {
	p := Start(t, startEcho(t))
	c := dial(t, p.Addr())
	const delay = 100 * time.Millisecond
	p.SetDelay(delay)
	start := time.Now()
	if _, err := roundTrip(c, "slow", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	// One delay each way.
	if took := time.Since(start); took < 2*delay {
		t.Fatalf("round trip took %v with a %v delay each way", took, delay)
	}
	p.SetDelay(0)
	start = time.Now()
	if _, err := roundTrip(c, "fast", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took >= 2*delay {
		t.Fatalf("round trip took %v after the delay was removed", took)
	}
}
