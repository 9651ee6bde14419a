package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// StreamLayer is a raft.StreamLayer over TCP that runs the token handshake
// (handshake.go), or with node certificates mutual TLS, on every connection
// before raft sees it.
type StreamLayer struct {
	listener  net.Listener
	advertise net.Addr
	key       handshakeKey
	tls       *CertSource // nil: plain TCP
	tlsServer *tls.Config
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
// (empty means the bound address, which must then be a specific IP). With
// node certificates every connection is mutual TLS instead, both sides
// verified against the node CA, and the token plays no part in raft (so it
// can be rotated node by node).
func Listen(bindAddr, advertise, token string, nodeTLS *CertSource, logger *slog.Logger) (*StreamLayer, error) {
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
		key:       newHandshakeKey(token),
		tls:       nodeTLS,
		logger:    logger,
		verified:  make(chan net.Conn),
		done:      make(chan struct{}),
	}
	if nodeTLS != nil {
		s.tlsServer = nodeTLS.MutualServerConfig()
	}
	go s.acceptLoop()
	return s, nil
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
	deadline := time.Now().Add(handshakeTimeout)
	if s.tls != nil {
		tconn := tls.Server(conn, s.tlsServer)
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		err := tconn.HandshakeContext(ctx)
		cancel()
		if err != nil {
			s.logger.Warn("rejected raft connection: TLS handshake failed", "remote", conn.RemoteAddr().String(), "err", err)
			conn.Close()
			return
		}
		conn = tconn
	} else if err := s.key.listenerHandshake(conn, deadline); err != nil {
		s.logger.Warn("rejected raft connection without a valid token handshake", "remote", conn.RemoteAddr().String(), "err", err)
		conn.Close()
		return
	}
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

// Dial connects to a peer and runs the token or TLS handshake, all within
// timeout.
func (s *StreamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	deadline := time.Now().Add(timeout)
	if s.tls != nil {
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		defer cancel()
		return s.tls.DialTLS(ctx, "tcp", string(address))
	}
	conn, err := net.DialTimeout("tcp", string(address), timeout)
	if err != nil {
		return nil, err
	}
	if err := s.key.dialerHandshake(conn, deadline); err != nil {
		conn.Close()
		return nil, fmt.Errorf("raft handshake with %s: %w", address, err)
	}
	return conn, nil
}

// NewNetworkTransport builds raft's transport on a token-checking (and,
// with nodeTLS, mutual-TLS) stream layer bound to bindAddr.
func NewNetworkTransport(bindAddr, advertise, token string, nodeTLS *CertSource, logger *slog.Logger, raftLogger hclog.Logger) (*raft.NetworkTransport, error) {
	stream, err := Listen(bindAddr, advertise, token, nodeTLS, logger)
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
