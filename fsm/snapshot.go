package fsm

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"

	"github.com/hashicorp/raft"
)

// snapshotMagic opens every snapshot; the byte after it is the format
// version, so a node can refuse a snapshot written by a newer format instead
// of misreading it.
const (
	snapshotMagic   = "SLUICEFSM"
	snapshotVersion = 1
)

// snapshotBody is the encoded state of format version 1. RulesDoc is []byte
// (base64 in JSON) so the document survives byte for byte.
type snapshotBody struct {
	RulesVersion uint64   `json:"rules_version"`
	RulesDoc     []byte   `json:"rules_doc"`
	Members      []Member `json:"members"`
	// Leases was added without a format bump: older snapshots lack it and
	// read as an empty lease table.
	Leases map[string]map[string]Lease `json:"leases,omitempty"`
	// Withheld, likewise: older snapshots withhold nothing.
	Withheld []string `json:"withheld,omitempty"`
	// LeaseGen, likewise: older snapshots start counting again from 0, and
	// their entries, of generation 0, are never released early.
	LeaseGen uint64 `json:"lease_gen,omitempty"`
}

type snapshot struct{ state *State }

func (s *snapshot) Persist(sink raft.SnapshotSink) error {
	if err := writeSnapshot(sink, s.state); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("fsm: persist snapshot: %w", err)
	}
	return sink.Close()
}

func (s *snapshot) Release() {}

func writeSnapshot(w io.Writer, s *State) error {
	bw := bufio.NewWriter(w)
	bw.WriteString(snapshotMagic)
	bw.WriteByte(snapshotVersion)
	body := snapshotBody{RulesVersion: s.rulesVersion, RulesDoc: s.rulesDoc, Members: s.Members(), Leases: s.leases, Withheld: s.withheld, LeaseGen: s.leaseGen}
	if err := json.NewEncoder(bw).Encode(body); err != nil {
		return err
	}
	return bw.Flush()
}

func readSnapshot(r io.Reader) (*State, error) {
	br := bufio.NewReader(r)
	header := make([]byte, len(snapshotMagic)+1)
	if _, err := io.ReadFull(br, header); err != nil {
		return nil, fmt.Errorf("read header: %w", err)
	}
	if !bytes.Equal(header[:len(snapshotMagic)], []byte(snapshotMagic)) {
		return nil, fmt.Errorf("not a sluice FSM snapshot")
	}
	if v := header[len(snapshotMagic)]; v != snapshotVersion {
		return nil, fmt.Errorf("unsupported snapshot format version %d (this node reads %d)", v, snapshotVersion)
	}
	var body snapshotBody
	dec := json.NewDecoder(br)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		return nil, fmt.Errorf("decode state: %w", err)
	}
	s := &State{rulesVersion: body.RulesVersion, rulesDoc: body.RulesDoc, members: make(map[string]Member, len(body.Members)), leases: body.Leases, withheld: body.Withheld, leaseGen: body.LeaseGen}
	for _, m := range body.Members {
		s.members[m.ID] = m
	}
	return s, nil
}
