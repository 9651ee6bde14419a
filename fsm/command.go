package fsm

import (
	"encoding/json"
	"fmt"
)

// CommandType is the first byte of every raft log entry this FSM applies.
// Values are persisted in raft logs: never renumber or reuse one, only append.
type CommandType uint8

const (
	// CmdSetRules replaces the rules document; payload is the raw, already
	// validated JSON document.
	CmdSetRules CommandType = 1
	// CmdUpsertMember adds or updates a member; payload is a JSON Member.
	CmdUpsertMember CommandType = 2
	// CmdRemoveMember removes a member; payload is the member id.
	CmdRemoveMember CommandType = 3
	// CmdSetLeases replaces the lease table; payload is a JSON LeaseProposal.
	CmdSetLeases CommandType = 4
)

func (t CommandType) String() string {
	switch t {
	case CmdSetRules:
		return "SetRules"
	case CmdUpsertMember:
		return "UpsertMember"
	case CmdRemoveMember:
		return "RemoveMember"
	case CmdSetLeases:
		return "SetLeases"
	}
	return fmt.Sprintf("CommandType(%d)", uint8(t))
}

// handler computes the next state from the current one and a payload. It
// returns the state unchanged when the command changes nothing, and an error
// only for a payload that cannot be decoded (the entry is corrupt).
type handler func(cur *State, payload []byte) (next *State, err error)

// handlers maps each command type to its one handler. Adding a command is
// one constant above plus one entry here.
var handlers = map[CommandType]handler{
	CmdSetRules:     applySetRules,
	CmdUpsertMember: applyUpsertMember,
	CmdRemoveMember: applyRemoveMember,
	CmdSetLeases:    applySetLeases,
}

// encode builds a log entry: the type byte followed by the payload.
func encode(t CommandType, payload []byte) []byte {
	b := make([]byte, 1+len(payload))
	b[0] = byte(t)
	copy(b[1:], payload)
	return b
}

// EncodeSetRules returns the log entry that replaces the rules with doc.
// The caller validates doc first; the FSM stores it as given.
func EncodeSetRules(doc []byte) []byte { return encode(CmdSetRules, doc) }

// EncodeUpsertMember returns the log entry that adds or updates m.
func EncodeUpsertMember(m Member) []byte {
	payload, err := json.Marshal(m)
	if err != nil { // a struct of strings always marshals
		panic(fmt.Sprintf("fsm: encode member: %v", err))
	}
	return encode(CmdUpsertMember, payload)
}

// EncodeRemoveMember returns the log entry that removes member id.
func EncodeRemoveMember(id string) []byte { return encode(CmdRemoveMember, []byte(id)) }

func applySetRules(cur *State, doc []byte) (*State, error) {
	if len(doc) == 0 {
		return nil, fmt.Errorf("empty rules document")
	}
	next := cur.clone()
	next.rulesVersion = cur.rulesVersion + 1
	next.rulesDoc = append([]byte(nil), doc...)
	return next, nil
}

func applyUpsertMember(cur *State, payload []byte) (*State, error) {
	var m Member
	if err := json.Unmarshal(payload, &m); err != nil {
		return nil, fmt.Errorf("decode member: %w", err)
	}
	if m.ID == "" {
		return nil, fmt.Errorf("member without id")
	}
	if old, ok := cur.members[m.ID]; ok && old == m {
		return cur, nil
	}
	next := cur.clone()
	next.members = cloneMembers(cur.members)
	next.members[m.ID] = m
	return next, nil
}

func applyRemoveMember(cur *State, payload []byte) (*State, error) {
	id := string(payload)
	if id == "" {
		return nil, fmt.Errorf("remove member without id")
	}
	if _, ok := cur.members[id]; !ok {
		return cur, nil
	}
	next := cur.clone()
	next.members = cloneMembers(cur.members)
	delete(next.members, id)
	return next, nil
}
