package fsm

import (
	"fmt"
	"io"
	"sync/atomic"

	"github.com/hashicorp/raft"
)

// RulesHook is told about every rules change, in apply order, on raft's FSM
// goroutine: it must return quickly.
type RulesHook func(version uint64, doc []byte)

// LeasesHook is told about every lease table applied or restored, on raft's
// FSM goroutine, right after the state holding it is published: a node
// notes when its entries arrived (it trusts only entries that arrive soon
// after they were issued). It must return quickly.
type LeasesHook func(s *State)

// FSM implements raft.FSM over the replicated State.
type FSM struct {
	state    atomic.Pointer[State]
	onRules  RulesHook
	onLeases LeasesHook
}

var _ raft.FSM = (*FSM)(nil)

// Option configures an FSM.
type Option func(*FSM)

// WithLeasesHook calls h after every SetLeases and every restore.
func WithLeasesHook(h LeasesHook) Option { return func(f *FSM) { f.onLeases = h } }

// New returns an FSM holding the empty state. onRules may be nil.
func New(onRules RulesHook, opts ...Option) *FSM {
	f := &FSM{onRules: onRules}
	for _, o := range opts {
		o(f)
	}
	f.state.Store(emptyState)
	return f
}

// State returns the current state. It never blocks and the result never
// changes; call again to see later applies.
func (f *FSM) State() *State { return f.state.Load() }

// Apply applies one command. For CmdSetRules it returns the new rules
// version (uint64); other commands return nil. An entry that cannot be
// decoded panics: applying it differently from another replica, or skipping
// it, would let the replicas diverge without anyone noticing.
func (f *FSM) Apply(l *raft.Log) any {
	if len(l.Data) == 0 {
		panic(fmt.Sprintf("fsm: empty log entry at index %d", l.Index))
	}
	t := CommandType(l.Data[0])
	h, ok := handlers[t]
	if !ok {
		panic(fmt.Sprintf("fsm: unknown command type %d at index %d", l.Data[0], l.Index))
	}
	cur := f.state.Load()
	next, err := h(cur, l.Data[1:])
	if err != nil {
		panic(fmt.Sprintf("fsm: corrupt %s entry at index %d: %v", t, l.Index, err))
	}
	f.state.Store(next)
	if next.rulesVersion != cur.rulesVersion {
		f.notifyRules(next)
	}
	if t == CmdSetLeases && f.onLeases != nil {
		f.onLeases(next)
	}
	if t == CmdSetRules {
		return next.rulesVersion
	}
	return nil
}

// Snapshot captures the current state; because states are immutable,
// Persist can run concurrently with later applies.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	return &snapshot{state: f.state.Load()}, nil
}

// Restore replaces the state with a snapshot written by Persist.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	s, err := readSnapshot(rc)
	if err != nil {
		return fmt.Errorf("fsm: restore: %w", err)
	}
	f.state.Store(s)
	if s.rulesVersion > 0 {
		f.notifyRules(s)
	}
	if f.onLeases != nil {
		f.onLeases(s)
	}
	return nil
}

func (f *FSM) notifyRules(s *State) {
	if f.onRules != nil {
		f.onRules(s.rulesVersion, s.rulesDoc)
	}
}
