package fsm

import (
	"bytes"
	"io"
	"strings"
	"testing"

	"github.com/hashicorp/raft"
)

type rulesEvent struct {
	version uint64
	doc     string
}

// newRecordingFSM returns an FSM and the rules events it reports.
func newRecordingFSM() (*FSM, *[]rulesEvent) {
	var events []rulesEvent
	f := New(func(v uint64, doc []byte) { events = append(events, rulesEvent{v, string(doc)}) })
	return f, &events
}

func apply(f *FSM, entry []byte) any {
	return f.Apply(&raft.Log{Index: 1, Type: raft.LogCommand, Data: entry})
}

func TestSetRulesBumpsVersionAndNotifies(t *testing.T) {
	f, events := newRecordingFSM()
	if got := apply(f, EncodeSetRules([]byte(`{"rules":[]}`))); got != uint64(1) {
		t.Fatalf("first SetRules returned %v, want 1", got)
	}
	if got := apply(f, EncodeSetRules([]byte(`{"rules":[{"name":"a"}]}`))); got != uint64(2) {
		t.Fatalf("second SetRules returned %v, want 2", got)
	}
	v, doc := f.State().Rules()
	if v != 2 || string(doc) != `{"rules":[{"name":"a"}]}` {
		t.Fatalf("state rules = %d %s", v, doc)
	}
	want := []rulesEvent{{1, `{"rules":[]}`}, {2, `{"rules":[{"name":"a"}]}`}}
	if len(*events) != len(want) || (*events)[0] != want[0] || (*events)[1] != want[1] {
		t.Fatalf("OnRules events = %v, want %v", *events, want)
	}
}

func TestSetRulesSameDocumentStillBumpsVersion(t *testing.T) {
	f, events := newRecordingFSM()
	doc := []byte(`{"rules":[]}`)
	apply(f, EncodeSetRules(doc))
	apply(f, EncodeSetRules(doc))
	if v, _ := f.State().Rules(); v != 2 {
		t.Fatalf("version = %d, want 2", v)
	}
	if len(*events) != 2 {
		t.Fatalf("OnRules called %d times, want 2", len(*events))
	}
}

func TestStatesAreImmutable(t *testing.T) {
	f := New(nil)
	apply(f, EncodeUpsertMember(Member{ID: "n1", RaftAddr: "r1", HTTPAddr: "h1"}))
	before := f.State()
	apply(f, EncodeUpsertMember(Member{ID: "n2", RaftAddr: "r2", HTTPAddr: "h2"}))
	apply(f, EncodeSetRules([]byte(`{}`)))
	if len(before.Members()) != 1 {
		t.Fatalf("old state changed: %v", before.Members())
	}
	if v, _ := before.Rules(); v != 0 {
		t.Fatalf("old state rules version changed to %d", v)
	}
	if len(f.State().Members()) != 2 {
		t.Fatalf("new state members = %v", f.State().Members())
	}
}

func TestUpsertMemberIdempotentAndAddressChange(t *testing.T) {
	f, events := newRecordingFSM()
	m := Member{ID: "n1", RaftAddr: "127.0.0.1:7000", HTTPAddr: "127.0.0.1:8000"}
	apply(f, EncodeUpsertMember(m))
	first := f.State()
	apply(f, EncodeUpsertMember(m))
	if f.State() != first {
		t.Fatal("re-applying the same member produced a new state")
	}
	moved := Member{ID: "n1", RaftAddr: "127.0.0.1:7100", HTTPAddr: "127.0.0.1:8100"}
	apply(f, EncodeUpsertMember(moved))
	got, ok := f.State().Member("n1")
	if !ok || got != moved {
		t.Fatalf("member after address change = %+v, %v", got, ok)
	}
	if n := len(f.State().Members()); n != 1 {
		t.Fatalf("members = %d, want 1", n)
	}
	if len(*events) != 0 {
		t.Fatalf("member commands reported rules changes: %v", *events)
	}
}

func TestRemoveMember(t *testing.T) {
	f := New(nil)
	apply(f, EncodeUpsertMember(Member{ID: "n1", RaftAddr: "r1", HTTPAddr: "h1"}))
	apply(f, EncodeUpsertMember(Member{ID: "n2", RaftAddr: "r2", HTTPAddr: "h2"}))
	apply(f, EncodeRemoveMember("n1"))
	if _, ok := f.State().Member("n1"); ok {
		t.Fatal("n1 still a member")
	}
	if ms := f.State().Members(); len(ms) != 1 || ms[0].ID != "n2" {
		t.Fatalf("members = %v", ms)
	}
	unchanged := f.State()
	apply(f, EncodeRemoveMember("n1"))
	if f.State() != unchanged {
		t.Fatal("removing an absent member produced a new state")
	}
}

func TestMembersSortedByID(t *testing.T) {
	f := New(nil)
	for _, id := range []string{"c", "a", "b"} {
		apply(f, EncodeUpsertMember(Member{ID: id, RaftAddr: "r" + id}))
	}
	ms := f.State().Members()
	if len(ms) != 3 || ms[0].ID != "a" || ms[1].ID != "b" || ms[2].ID != "c" {
		t.Fatalf("members = %v", ms)
	}
}

func TestCorruptEntriesPanic(t *testing.T) {
	cases := map[string][]byte{
		"empty entry":          nil,
		"unknown type":         {0xEE, '{', '}'},
		"member not json":      append([]byte{byte(CmdUpsertMember)}, "not json"...),
		"member without id":    append([]byte{byte(CmdUpsertMember)}, `{"raft_addr":"x"}`...),
		"empty rules":          {byte(CmdSetRules)},
		"remove without id":    {byte(CmdRemoveMember)},
		"zero command type":    {0, 'x'},
		"member not an object": append([]byte{byte(CmdUpsertMember)}, `[1,2]`...),
	}
	for name, entry := range cases {
		t.Run(name, func(t *testing.T) {
			f := New(nil)
			before := f.State()
			defer func() {
				r := recover()
				if r == nil {
					t.Fatal("Apply did not panic")
				}
				if !strings.Contains(r.(string), "fsm:") {
					t.Fatalf("panic value %q does not name the package", r)
				}
				if f.State() != before {
					t.Fatal("state changed by a corrupt entry")
				}
			}()
			apply(f, entry)
		})
	}
}

// memorySink is a raft.SnapshotSink writing to a buffer.
type memorySink struct {
	bytes.Buffer
	cancelled bool
}

func (s *memorySink) ID() string    { return "mem" }
func (s *memorySink) Cancel() error { s.cancelled = true; return nil }
func (s *memorySink) Close() error  { return nil }

func persist(t *testing.T, f *FSM) []byte {
	t.Helper()
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Release()
	var sink memorySink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	return sink.Bytes()
}

func TestSnapshotRestoreRoundTrip(t *testing.T) {
	src := New(nil)
	doc := []byte("{\n  \"rules\": [ ]\n}")
	apply(src, EncodeSetRules([]byte(`{"rules":[]}`)))
	apply(src, EncodeSetRules(doc))
	apply(src, EncodeUpsertMember(Member{ID: "n1", RaftAddr: "r1", HTTPAddr: "h1"}))
	apply(src, EncodeUpsertMember(Member{ID: "n2", RaftAddr: "r2", HTTPAddr: "h2"}))
	data := persist(t, src)

	// A later apply on the source must not leak into the persisted snapshot.
	apply(src, EncodeRemoveMember("n2"))

	dst, events := newRecordingFSM()
	if err := dst.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
		t.Fatal(err)
	}
	v, gotDoc := dst.State().Rules()
	if v != 2 || !bytes.Equal(gotDoc, doc) {
		t.Fatalf("restored rules = %d %q, want 2 %q", v, gotDoc, doc)
	}
	if ms := dst.State().Members(); len(ms) != 2 || ms[1] != (Member{ID: "n2", RaftAddr: "r2", HTTPAddr: "h2"}) {
		t.Fatalf("restored members = %v", ms)
	}
	if len(*events) != 1 || (*events)[0] != (rulesEvent{2, string(doc)}) {
		t.Fatalf("OnRules after restore = %v", *events)
	}
}

func TestRestoreEmptyStateDoesNotNotify(t *testing.T) {
	data := persist(t, New(nil))
	dst, events := newRecordingFSM()
	if err := dst.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
		t.Fatal(err)
	}
	if len(*events) != 0 {
		t.Fatalf("OnRules called for a snapshot without rules: %v", *events)
	}
}

func TestRestoreRejectsBadSnapshots(t *testing.T) {
	good := persist(t, New(nil))
	future := bytes.Clone(good)
	future[len(snapshotMagic)] = snapshotVersion + 1
	cases := map[string][]byte{
		"empty":          nil,
		"wrong magic":    append([]byte("NOTSLUICE"), good[len(snapshotMagic):]...),
		"future version": future,
		"truncated body": good[:len(snapshotMagic)+3],
	}
	for name, data := range cases {
		t.Run(name, func(t *testing.T) {
			f := New(nil)
			apply(f, EncodeSetRules([]byte(`{}`)))
			before := f.State()
			if err := f.Restore(io.NopCloser(bytes.NewReader(data))); err == nil {
				t.Fatal("Restore accepted a bad snapshot")
			}
			if f.State() != before {
				t.Fatal("a failed Restore changed the state")
			}
		})
	}
}

func TestCommandTypeString(t *testing.T) {
	if CmdSetRules.String() != "SetRules" || CommandType(99).String() != "CommandType(99)" {
		t.Fatalf("String() = %q, %q", CmdSetRules.String(), CommandType(99).String())
	}
}
