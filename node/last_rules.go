package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/google/renameio/v2"
)

// Raft hands a restarted node the entries after its latest snapshot only
// once a leader tells it they are committed: seconds after a restart, never
// for a node that restarts without a quorum. The rules are too important to
// wait for that, so every rules version this node applies is also written,
// atomically, to lastRulesFile in the data dir, and a restarted node
// installs it before it serves anything. Only committed entries reach the
// FSM, so the file never holds rules the cluster did not agree on, and rules
// versions only grow along the log, so "the highest version seen" is the
// newest rules whichever of the file, a snapshot or the log delivers first.

// lastRulesFile holds the last applied rules; it lives beside raft.db.
const lastRulesFile = "last-rules.json"

// knownRules is a rules document and its version.
type knownRules struct {
	Version uint64 `json:"version"`
	// Doc is []byte (base64 in JSON) so it survives byte for byte, as in
	// the FSM snapshot.
	Doc []byte `json:"doc"`
}

// loadLastRules reads the rules saved in dir, or nil when there are none.
// Saved rules without raft state beside them belong to a cluster this data
// dir no longer holds (its raft store was removed): they are deleted, so a
// new cluster's version 1 is not mistaken for an older one.
func loadLastRules(dir string, hadRaftState bool) (*knownRules, error) {
	path := filepath.Join(dir, lastRulesFile)
	if !hadRaftState {
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("remove stale %s: %w", lastRulesFile, err)
		}
		return nil, nil
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", lastRulesFile, err)
	}
	var r knownRules
	if err := json.Unmarshal(data, &r); err != nil || r.Version == 0 || len(r.Doc) == 0 {
		return nil, fmt.Errorf("%s is corrupt: %v", path, err)
	}
	return &r, nil
}

// saveLastRules replaces the saved rules with r: a crash leaves either the
// old file or the new one, never a torn one.
func saveLastRules(dir string, r *knownRules) error {
	data, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return renameio.WriteFile(filepath.Join(dir, lastRulesFile), data, 0o640)
}
