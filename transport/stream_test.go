package transport

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

var quiet = slog.New(slog.DiscardHandler)

func listen(t *testing.T, token string) *StreamLayer {
	t.Helper()
	return listenTLS(t, token, nil)
}

// acceptOne returns the next verified connection, or nil if none arrives
// within wait.
func acceptOne(s *StreamLayer, wait time.Duration) net.Conn {
	got := make(chan net.Conn, 1)
	go func() {
		c, err := s.Accept()
		if err != nil {
			c = nil
		}
		got <- c
	}()
	select {
	case c := <-got:
		return c
	case <-time.After(wait):
		return nil
	}
}

func TestDialWithSameTokenIsAccepted(t *testing.T) {
	server := listen(t, "secret")
	client := listen(t, "secret")
	conn, err := client.Dial(raft.ServerAddress(server.Addr().String()), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	accepted := acceptOne(server, 2*time.Second)
	if accepted == nil {
		t.Fatal("connection with the right token was not accepted")
	}
	defer accepted.Close()
	buf := make([]byte, 4)
	if _, err := io.ReadFull(accepted, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("payload after handshake = %q, %v", buf, err)
	}
}

func TestWrongTokenIsRefusedBothWays(t *testing.T) {
	server := listen(t, "secret")
	intruder := listen(t, "guess")
	if conn, err := intruder.Dial(raft.ServerAddress(server.Addr().String()), 2*time.Second); err == nil {
		conn.Close()
		t.Fatal("a dialer with the wrong token completed the handshake")
	}
	if c := acceptOne(server, 300*time.Millisecond); c != nil {
		c.Close()
		t.Fatal("a connection with the wrong token was handed to raft")
	}
	// Mutual: a node does not speak raft to a listener that cannot prove the token.
	if conn, err := server.Dial(raft.ServerAddress(intruder.Addr().String()), 2*time.Second); err == nil {
		conn.Close()
		t.Fatal("dialing a listener without the token succeeded")
	}
}

func TestPeerWithoutTheSecretIsRefused(t *testing.T) {
	for _, token := range []string{"secret", ""} {
		server := listen(t, token)
		raw, err := net.Dial("tcp", server.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()
		raw.Write(append([]byte(handshakeMagic), make([]byte, nonceLen)...))
		raw.Write(make([]byte, proofLen))
		if c := acceptOne(server, 300*time.Millisecond); c != nil {
			c.Close()
			t.Fatalf("token %q: a connection with a guessed proof was handed to raft", token)
		}
		expectHangUp(t, raw)
	}
}

// TestReplayedHandshakeIsRefused records what a genuine dialer sends and
// replays it on a new connection: the listener's fresh nonce makes it fail.
func TestReplayedHandshakeIsRefused(t *testing.T) {
	server := listen(t, "secret")
	client := listen(t, "secret")
	tap, recorded := recordingProxy(t, server.Addr().String())
	conn, err := client.Dial(raft.ServerAddress(tap), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	if c := acceptOne(server, 2*time.Second); c == nil {
		t.Fatal("the genuine handshake through the tap was not accepted")
	} else {
		c.Close()
	}

	replay, err := net.Dial("tcp", server.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer replay.Close()
	if _, err := replay.Write(recorded()); err != nil {
		t.Fatal(err)
	}
	if c := acceptOne(server, 500*time.Millisecond); c != nil {
		c.Close()
		t.Fatal("a replayed handshake was handed to raft")
	}
	expectHangUp(t, replay)
}

// recordingProxy forwards one connection to target and returns its address
// and what the dialer sent through it.
func recordingProxy(t *testing.T, target string) (string, func() []byte) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var mu sync.Mutex
	var sent []byte
	done := make(chan struct{})
	go func() {
		defer close(done)
		in, err := ln.Accept()
		if err != nil {
			return
		}
		defer in.Close()
		out, err := net.Dial("tcp", target)
		if err != nil {
			return
		}
		defer out.Close()
		go io.Copy(in, out)
		buf := make([]byte, 512)
		for {
			n, err := in.Read(buf)
			mu.Lock()
			sent = append(sent, buf[:n]...)
			mu.Unlock()
			out.Write(buf[:n])
			if err != nil {
				return
			}
		}
	}()
	return ln.Addr().String(), func() []byte {
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("the tapped connection did not end")
		}
		mu.Lock()
		defer mu.Unlock()
		return append([]byte(nil), sent...)
	}
}

func expectHangUp(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	for {
		_, err := c.Read(make([]byte, 64))
		if err == nil {
			continue // the listener's challenge
		}
		if !errors.Is(err, io.EOF) && !isReset(err) {
			t.Fatalf("refused connection read = %v, want EOF", err)
		}
		return
	}
}

func isReset(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && !op.Timeout()
}

func TestCloseUnblocksAccept(t *testing.T) {
	s := listen(t, "")
	errc := make(chan error, 1)
	go func() { _, err := s.Accept(); errc <- err }()
	s.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Accept after Close = %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Accept still blocked after Close")
	}
}

func TestAdvertiseAddress(t *testing.T) {
	s, err := Listen("127.0.0.1:0", "raft-1.example:7000", "", nil, quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := s.Addr().String(); got != "raft-1.example:7000" {
		t.Fatalf("Addr() = %q", got)
	}
	if _, err := Listen("0.0.0.0:0", "", "", nil, quiet); err == nil {
		t.Fatal("an unspecified bind address without advertise was accepted")
	}
}
