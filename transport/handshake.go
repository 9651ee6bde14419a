package transport

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// The raft handshake is a mutual challenge–response keyed by the admin
// token, so only nodes holding the token speak raft to each other, the token
// never crosses the wire, and a recorded handshake is worthless:
//
//	dialer   → listener: magic, dialer nonce
//	listener → dialer:   listener nonce, MAC(token, "listener" | dialer nonce | listener nonce)
//	dialer   → listener: MAC(token, "dialer" | dialer nonce | listener nonce)
//
// Each side proves the token over a nonce the other just chose, so a replay
// meets a fresh nonce and fails; the role label binds each proof to its
// direction, so a listener's proof cannot be reflected back as a dialer's.
// The handshake authenticates the start of a connection only: against an
// attacker on the network path, run raft over mutual TLS (--node-cert).
const handshakeMagic = "SLUICE-RAFT-2\n"

const (
	nonceLen = 32
	proofLen = sha256.Size
)

// handshakeTimeout bounds how long a connection may take to prove itself,
// so a silent stranger cannot hold a goroutine forever.
const handshakeTimeout = 5 * time.Second

var errHandshake = errors.New("raft handshake: peer does not hold the admin token")

// handshakeKey is the HMAC key for token, fixed length whatever the token.
type handshakeKey [sha256.Size]byte

func newHandshakeKey(token string) handshakeKey {
	return sha256.Sum256([]byte("sluice raft handshake\x00" + token))
}

func (k handshakeKey) proof(role string, dialerNonce, listenerNonce []byte) []byte {
	mac := hmac.New(sha256.New, k[:])
	mac.Write([]byte(role))
	mac.Write(dialerNonce)
	mac.Write(listenerNonce)
	return mac.Sum(nil)
}

// dialerHandshake runs the dialer's side on a fresh connection before deadline.
func (k handshakeKey) dialerHandshake(conn net.Conn, deadline time.Time) error {
	_ = conn.SetDeadline(deadline)
	defer conn.SetDeadline(time.Time{})
	hello := make([]byte, len(handshakeMagic)+nonceLen)
	copy(hello, handshakeMagic)
	dialerNonce := hello[len(handshakeMagic):]
	rand.Read(dialerNonce)
	if _, err := conn.Write(hello); err != nil {
		return err
	}
	answer := make([]byte, nonceLen+proofLen)
	if _, err := io.ReadFull(conn, answer); err != nil {
		return fmt.Errorf("raft handshake: read the listener's proof: %w", err)
	}
	listenerNonce := answer[:nonceLen]
	if !hmac.Equal(answer[nonceLen:], k.proof("listener", dialerNonce, listenerNonce)) {
		return errHandshake
	}
	_, err := conn.Write(k.proof("dialer", dialerNonce, listenerNonce))
	return err
}

// listenerHandshake runs the listener's side on an accepted connection.
func (k handshakeKey) listenerHandshake(conn net.Conn, deadline time.Time) error {
	_ = conn.SetDeadline(deadline)
	defer conn.SetDeadline(time.Time{})
	hello := make([]byte, len(handshakeMagic)+nonceLen)
	if _, err := io.ReadFull(conn, hello); err != nil {
		return err
	}
	if string(hello[:len(handshakeMagic)]) != handshakeMagic {
		return errHandshake
	}
	dialerNonce := hello[len(handshakeMagic):]
	answer := make([]byte, nonceLen, nonceLen+proofLen)
	rand.Read(answer)
	answer = append(answer, k.proof("listener", dialerNonce, answer[:nonceLen])...)
	if _, err := conn.Write(answer); err != nil {
		return err
	}
	got := make([]byte, proofLen)
	if _, err := io.ReadFull(conn, got); err != nil {
		return err
	}
	if !hmac.Equal(got, k.proof("dialer", dialerNonce, answer[:nonceLen])) {
		return errHandshake
	}
	return nil
}
