package transport

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

var quiet = slog.New(slog.DiscardHandler)

func listen(t *testing.T, token string) *StreamLayer {
	t.Helper()
	s, err := Listen("127.0.0.1:0", "", token, quiet)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
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

func TestWrongTokenOrNoHandshakeIsRejected(t *testing.T) {
	server := listen(t, "secret")
	intruder := listen(t, "guess")
	conn, err := intruder.Dial(raft.ServerAddress(server.Addr().String()), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	raw, err := net.Dial("tcp", server.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.Write(make([]byte, handshakeLen))

	if c := acceptOne(server, 300*time.Millisecond); c != nil {
		c.Close()
		t.Fatal("a connection without the token was handed to raft")
	}
	// The server hangs up on both.
	for _, c := range []net.Conn{conn, raw} {
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) && !isReset(err) {
			t.Fatalf("rejected connection read = %v, want EOF", err)
		}
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
	s, err := Listen("127.0.0.1:0", "raft-1.example:7000", "", quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := s.Addr().String(); got != "raft-1.example:7000" {
		t.Fatalf("Addr() = %q", got)
	}
	if _, err := Listen("0.0.0.0:0", "", "", quiet); err == nil {
		t.Fatal("an unspecified bind address without advertise was accepted")
	}
}
