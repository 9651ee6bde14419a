package transport

import (
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// handshakeMagic opens every raft connection, followed by a proof of the
// token: HMAC-SHA256 keyed by the token over the magic. The proof never
// reveals the token, and a stranger without it is dropped before raft reads
// a byte from it.
const handshakeMagic = "SLUICE-RAFT-1\n"

const handshakeLen = len(handshakeMagic) + sha256.Size

// handshakeTimeout bounds how long an accepted connection may take to prove
// itself, so a silent stranger cannot hold a goroutine forever.
const handshakeTimeout = 5 * time.Second

// StreamLayer is a raft.StreamLayer over TCP that requires the token
// handshake on every connection.
type StreamLayer struct {
	listener  net.Listener
	advertise net.Addr
	handshake []byte
	logger    *slog.Logger

	verified  chan net.Conn
	done      chan struct{}
	closeOnce sync.Once
}

var _ raft.StreamLayer = (*StreamLayer)(nil)

// advertiseAddr is a raft address as other nodes dial it; it may be a host
// name, which net.TCPAddr cannot hold.
type advertiseAddr string

func (a advertiseAddr) Network() string { return "tcp" }
func (a advertiseAddr) String() string  { return string(a) }

// Listen binds bindAddr and returns a stream layer advertising advertise
// (empty means the bound address, which must then be a specific IP).
func Listen(bindAddr, advertise, token string, logger *slog.Logger) (*StreamLayer, error) {
	ln, err := net.Listen("tcp", bindAddr)
	if err != nil {
		return nil, fmt.Errorf("raft listen %s: %w", bindAddr, err)
	}
	var adv net.Addr = advertiseAddr(advertise)
	if advertise == "" {
		tcp := ln.Addr().(*net.TCPAddr)
		if tcp.IP == nil || tcp.IP.IsUnspecified() {
			ln.Close()
			return nil, fmt.Errorf("raft address %s is not advertisable: set a raft advertise address", ln.Addr())
		}
		adv = tcp
	}
	s := &StreamLayer{
		listener:  ln,
		advertise: adv,
		handshake: handshake(token),
		logger:    logger,
		verified:  make(chan net.Conn),
		done:      make(chan struct{}),
	}
	go s.acceptLoop()
	return s, nil
}

func handshake(token string) []byte {
	mac := hmac.New(sha256.New, []byte(token))
	mac.Write([]byte(handshakeMagic))
	return mac.Sum([]byte(handshakeMagic))
}

// acceptLoop accepts raw connections and verifies each on its own goroutine,
// so one slow client cannot stall accepting the others.
func (s *StreamLayer) acceptLoop() {
	for {
		conn, err := s.listener.Accept()
		if err != nil {
			select {
			case <-s.done:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			s.logger.Warn("raft accept failed", "err", err)
			time.Sleep(50 * time.Millisecond)
			continue
		}
		go s.verify(conn)
	}
}

func (s *StreamLayer) verify(conn net.Conn) {
	got := make([]byte, handshakeLen)
	_ = conn.SetReadDeadline(time.Now().Add(handshakeTimeout))
	_, err := io.ReadFull(conn, got)
	if err != nil || !hmac.Equal(got, s.handshake) {
		s.logger.Warn("rejected raft connection without a valid token handshake", "remote", conn.RemoteAddr().String())
		conn.Close()
		return
	}
	_ = conn.SetReadDeadline(time.Time{})
	select {
	case s.verified <- conn:
	case <-s.done:
		conn.Close()
	}
}

// Accept returns the next connection that passed the handshake.
func (s *StreamLayer) Accept() (net.Conn, error) {
	select {
	case conn := <-s.verified:
		return conn, nil
	case <-s.done:
		return nil, net.ErrClosed
	}
}

// Close stops accepting; connections already handed out stay open.
func (s *StreamLayer) Close() error {
	var err error
	s.closeOnce.Do(func() {
		close(s.done)
		err = s.listener.Close()
	})
	return err
}

// Addr returns the advertised address, which raft gives to its peers.
func (s *StreamLayer) Addr() net.Addr { return s.advertise }

// Dial connects to a peer and sends the handshake.
func (s *StreamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	conn, err := net.DialTimeout("tcp", string(address), timeout)
	if err != nil {
		return nil, err
	}
	_ = conn.SetWriteDeadline(time.Now().Add(timeout))
	if _, err := conn.Write(s.handshake); err != nil {
		conn.Close()
		return nil, fmt.Errorf("raft handshake with %s: %w", address, err)
	}
	_ = conn.SetWriteDeadline(time.Time{})
	return conn, nil
}

// NewNetworkTransport builds raft's transport on a token-checking stream
// layer bound to bindAddr.
func NewNetworkTransport(bindAddr, advertise, token string, logger *slog.Logger, raftLogger hclog.Logger) (*raft.NetworkTransport, error) {
	stream, err := Listen(bindAddr, advertise, token, logger)
	if err != nil {
		return nil, err
	}
	return raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  stream,
		MaxPool: 3,
		Timeout: 10 * time.Second,
		Logger:  raftLogger,
		// One RPC in flight turns off pipelined replication, which in raft
		// v1.7.3 can deadlock when a follower rejects an append (the leader
		// then neither replicates to it nor shuts down). Sluice's writes are
		// rare and small, so pipelining buys nothing.
		MaxRPCsInFlight: 1,
	}), nil
}
