package lua

import (
	"context"
	"errors"

	"github.com/redis/go-redis/v9"
)

// A node must start while Redis is down: that is when its fallback matters
// most. With --redis-mode single or cluster the client connects when first
// used, so only auto mode, which must ask Redis what it is before it can pick
// a client, needs more: a pending Limiter. It has no client at first, so
// every call fails at once with ErrNoClient (the caller decides in
// fallback), and its Ping, which the fallback probe calls, tries to make the
// client until Redis answers the question.

// ErrNoClient: a pending Limiter has not reached Redis yet.
var ErrNoClient = errors.New("redis not reached yet (its mode is still unknown)")

// NewPendingLimiter returns a Limiter without a client: Ping calls dial until
// it succeeds and keeps the client it makes.
func NewPendingLimiter(dial func(context.Context) (redis.UniversalClient, error)) *Limiter {
	return &Limiter{dial: dial}
}

// client returns the Limiter's client, or ErrNoClient while it is pending.
func (l *Limiter) client() (redis.UniversalClient, error) {
	if rdb := l.rdb.Load(); rdb != nil {
		return *rdb, nil
	}
	return nil, ErrNoClient
}

// Mode says which client the Limiter uses: "single", "cluster", or
// "unknown" while a pending Limiter has not reached Redis.
func (l *Limiter) Mode() string {
	rdb, err := l.client()
	if err != nil {
		return "unknown"
	}
	if _, ok := rdb.(*redis.ClusterClient); ok {
		return "cluster"
	}
	return "single"
}

// connect returns the client, making it first when the Limiter is pending.
func (l *Limiter) connect(ctx context.Context) (redis.UniversalClient, error) {
	if rdb, err := l.client(); err == nil {
		return rdb, nil
	}
	l.dialing.Lock()
	defer l.dialing.Unlock()
	if rdb, err := l.client(); err == nil {
		return rdb, nil
	}
	if l.closed {
		return nil, redis.ErrClosed
	}
	rdb, err := l.dial(ctx)
	if err != nil {
		return nil, err
	}
	l.rdb.Store(&rdb)
	return rdb, nil
}

// Close closes the client, if there is one; a pending Limiter stops dialing.
func (l *Limiter) Close() error {
	l.dialing.Lock()
	defer l.dialing.Unlock()
	l.closed = true
	if rdb, err := l.client(); err == nil {
		return rdb.Close()
	}
	return nil
}
