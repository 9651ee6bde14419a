package engine

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/sluicehq/sluice/fsm/rules"
)

// QuotaStore keeps local mode's quota counters in their own bbolt file (not
// the raft store: counters change on every quota decision, raft state
// rarely), so a restarted node remembers what its quotas have used. The
// engine writes changed counters behind, once per quotaFlushInterval and on
// Close; see WithQuotaStore for what a crash can lose.
type QuotaStore struct {
	db     *bolt.DB
	loaded []quotaRecord
}

// quotaRecord is one counter as stored: the bucket key, the window it counts
// and how much of the quota that window has used.
type quotaRecord struct {
	key        string
	period     rules.Period
	start, end int64 // unix ns of the window [start, end)
	used       int64
}

var quotaBucket = []byte("quotas")

// quotaRecordFixed is the size of a record's fixed fields: start, end, used.
const quotaRecordFixed = 24

// OpenQuotaStore opens (creating if needed) the counter file at path and
// reads every counter in it.
func OpenQuotaStore(path string) (*QuotaStore, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return nil, fmt.Errorf("quota store %s: %w", path, err)
	}
	s := &QuotaStore{db: db}
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(quotaBucket)
		if err != nil {
			return err
		}
		return b.ForEach(func(k, v []byte) error {
			if len(v) < quotaRecordFixed {
				return fmt.Errorf("counter %q: record of %d bytes", k, len(v))
			}
			s.loaded = append(s.loaded, quotaRecord{
				key:    string(k),
				start:  int64(binary.BigEndian.Uint64(v[0:])),
				end:    int64(binary.BigEndian.Uint64(v[8:])),
				used:   int64(binary.BigEndian.Uint64(v[16:])),
				period: rules.Period(v[quotaRecordFixed:]),
			})
			return nil
		})
	})
	if err != nil {
		return nil, errors.Join(fmt.Errorf("quota store %s: %w", path, err), db.Close())
	}
	return s, nil
}

// write stores puts and removes deletes, in one transaction; deletes apply
// first, so a key both deleted and put ends up put. A record bbolt refuses
// on its own (a key it cannot hold) is left out and returned in refused, so
// that one bad key never blocks the others; err is a failure of the whole
// transaction, which wrote nothing.
func (s *QuotaStore) write(puts []quotaRecord, deletes []string) (refused []error, err error) {
	if len(puts) == 0 && len(deletes) == 0 {
		return nil, nil
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		refused = refused[:0]
		b := tx.Bucket(quotaBucket)
		for _, k := range deletes {
			if err := b.Delete([]byte(k)); err != nil {
				return err
			}
		}
		for _, r := range puts {
			v := make([]byte, quotaRecordFixed, quotaRecordFixed+len(r.period))
			binary.BigEndian.PutUint64(v[0:], uint64(r.start))
			binary.BigEndian.PutUint64(v[8:], uint64(r.end))
			binary.BigEndian.PutUint64(v[16:], uint64(r.used))
			err := b.Put([]byte(r.key), append(v, r.period...))
			switch {
			case errors.Is(err, berrors.ErrKeyRequired), errors.Is(err, berrors.ErrKeyTooLarge), errors.Is(err, berrors.ErrValueTooLarge):
				// Put checks these before it changes anything.
				refused = append(refused, fmt.Errorf("counter of %d-byte key not stored: %w", len(r.key), err))
			case err != nil:
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return refused, nil
}

// Close closes the file.
func (s *QuotaStore) Close() error { return s.db.Close() }
