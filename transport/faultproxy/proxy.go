// Package faultproxy is a TCP proxy for tests that need a network to fail on
// demand: put one between a node and Redis, or in front of a node's raft
// port, then cut, blackhole, delay and restore the link while real processes
// talk through it. It exists because killing a process is not the same fault
// as losing the path to it, and the system tests need both.
package faultproxy

import (
	"net"
	"sync"
	"testing"
	"time"
)

// mode is what the proxy does with traffic.
type mode int

const (
	// forwarding: connections are accepted and piped to the target.
	forwarding mode = iota
	// blackholing: connections are accepted but nothing is read or
	// forwarded, like a partition where packets are silently dropped.
	blackholing
	// refusing: connections are accepted and closed at once, like a
	// stopped server (the dialer sees a reset or EOF straight away).
	refusing
)

// Proxy forwards TCP connections from a local address to a target and can
// fail the link on demand. Its methods are safe for concurrent use.
type Proxy struct {
	target string
	ln     net.Listener

	mu    sync.Mutex
	mode  mode
	delay time.Duration
	conns map[net.Conn]struct{} // every open forwarded connection, both sides
	held  map[net.Conn]struct{} // connections accepted while blackholing
	wg    sync.WaitGroup
}

// Start listens on 127.0.0.1:0 and forwards to target until the test ends.
func Start(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("faultproxy: listen: %v", err)
	}
	p := &Proxy{target: target, ln: ln, conns: map[net.Conn]struct{}{}, held: map[net.Conn]struct{}{}}
	p.wg.Go(p.acceptLoop)
	t.Cleanup(p.close)
	return p
}

// Addr is the proxy's host:port, to give the client instead of the target's.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Cut closes every live connection and blackholes new ones: the usual
// partition, where the peer neither answers nor refuses.
func (p *Proxy) Cut() { p.Blackhole() }

// Blackhole closes every live connection; new connections are accepted and
// then left hanging, so clients run into their own timeouts.
func (p *Proxy) Blackhole() { p.fail(blackholing) }

// Refuse closes every live connection; new connections are closed as soon as
// they are accepted, so clients fail fast.
func (p *Proxy) Refuse() { p.fail(refusing) }

// Restore forwards new connections again. Connections cut earlier stay cut,
// and those left hanging by Blackhole are closed now, so clients reconnect
// at once instead of waiting out their timeouts.
func (p *Proxy) Restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mode = forwarding
	closeAll(p.held)
}

// SetDelay delays every chunk of data forwarded in either direction by d
// (0 turns the delay off). It applies to live and new connections.
func (p *Proxy) SetDelay(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.delay = d
}

func (p *Proxy) fail(m mode) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mode = m
	closeAll(p.conns)
	if m != blackholing {
		closeAll(p.held)
	}
}

func closeAll(conns map[net.Conn]struct{}) {
	for c := range conns {
		c.Close()
	}
	clear(conns)
}

func (p *Proxy) currentDelay() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.delay
}

func (p *Proxy) acceptLoop() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return // listener closed
		}
		p.mu.Lock()
		m := p.mode
		if m == refusing {
			p.mu.Unlock()
			c.Close()
			continue
		}
		if m == blackholing {
			p.held[c] = struct{}{} // never read; closed by Restore, Refuse or the end of the test
			p.mu.Unlock()
			continue
		}
		p.conns[c] = struct{}{}
		p.mu.Unlock()
		p.wg.Go(func() { p.forward(c) })
	}
}

// forward dials the target and pipes both ways until either side ends or the
// proxy cuts the link.
func (p *Proxy) forward(client net.Conn) {
	server, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		p.drop(client)
		return
	}
	if !p.track(server) {
		// Cut while dialling: the client conn is already closed.
		server.Close()
		return
	}
	var pipes sync.WaitGroup
	pipes.Go(func() { p.pipe(server, client) })
	pipes.Go(func() { p.pipe(client, server) })
	pipes.Wait()
}

// track registers conn unless the link was failed meanwhile.
func (p *Proxy) track(conn net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mode != forwarding {
		return false
	}
	p.conns[conn] = struct{}{}
	return true
}

func (p *Proxy) drop(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	c.Close()
}

// pipe copies src to dst, applying the delay, and closes both when done so
// the opposite pipe ends too.
func (p *Proxy) pipe(dst, src net.Conn) {
	defer p.drop(dst)
	defer p.drop(src)
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if d := p.currentDelay(); d > 0 {
				time.Sleep(d)
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return // EOF or a cut: either way this connection is over
		}
	}
}

func (p *Proxy) close() {
	p.ln.Close()
	p.fail(refusing)
	p.wg.Wait()
}
