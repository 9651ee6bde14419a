package node

import (
	"sync"

	"github.com/hashicorp/raft"
)

// guardedStable stands between raft and its stable store so that closing the
// store cannot crash the process. Raft answers heartbeats on the transport's
// goroutines, outside the routines Shutdown waits for; a heartbeat carrying a
// newer term that races shutdown writes the term after the bolt file is
// closed, and raft panics on that write error. Here such a late write waits
// for the store to close and then never returns: that raft instance is gone,
// so its caller (a doomed heartbeat handler) just never answers, and the
// peer times out exactly as if the node had stopped a moment earlier.
type guardedStable struct {
	raft.StableStore
	mu     sync.RWMutex
	closed bool
}

func (g *guardedStable) write(fn func() error) error {
	g.mu.RLock()
	if g.closed {
		g.mu.RUnlock()
		select {} // see the type's comment
	}
	defer g.mu.RUnlock()
	return fn()
}

func (g *guardedStable) Set(key, val []byte) error {
	return g.write(func() error { return g.StableStore.Set(key, val) })
}

func (g *guardedStable) SetUint64(key []byte, val uint64) error {
	return g.write(func() error { return g.StableStore.SetUint64(key, val) })
}

// close waits for writes in flight, then runs closeStore; later writes block.
func (g *guardedStable) close(closeStore func() error) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.closed = true
	return closeStore()
}
