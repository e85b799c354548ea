package tokenstore

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/google/uuid"
	bolt "go.etcd.io/bbolt"
)

// Issue creates a token for subject under the store's policy, or the one
// given by [WithPolicy], and returns it with its Info. The token is shown
// only here: the file keeps its hash. Issue is durable when it returns.
func (db *DB) Issue(ctx context.Context, subject string, opts ...IssueOption) (string, Info, error) {
	if err := db.begin(ctx, true); err != nil {
		return "", Info{}, wrap("issue", err)
	}
	if err := ValidateSubject(subject); err != nil {
		return "", Info{}, err
	}
	p, err := NewIssueParams(opts...)
	if err != nil {
		return "", Info{}, err
	}
	token, h, rec, err := db.newRecord(subject, p.Policy, p.Metadata)
	if err != nil {
		return "", Info{}, err
	}
	err = db.commit.run(func(tx *bolt.Tx) error {
		if err := db.checkLimit(tx, subject, rec.created, 1); err != nil {
			return refuse(err)
		}
		return putRecord(tx, h, &rec)
	})
	if err != nil {
		return "", Info{}, wrap("issue", boltErr(err))
	}
	db.ctr.issued.Add(1)
	return token, rec.info(rec.lastUsed), nil
}

func (db *DB) newRecord(subject string, p Policy, meta map[string]string) (string, Hash, record, error) {
	if p.IsZero() {
		p = db.policy
	}
	id, err := uuid.NewV7()
	if err != nil {
		return "", Hash{}, record{}, wrap("new id", err)
	}
	now := db.nowMs()
	token, h := db.format.GenerateAt(time.UnixMilli(now)) // the store's clock: tests inject one
	rec := record{id: id, subject: subject, created: now, lastUsed: now, policy: p, meta: meta}
	rec.filed = rec.deadline() // exact now; a lower bound once the token is used
	return token, h, rec, nil
}

// checkLimit fails with ErrTokenLimit when adding n tokens would give
// subject more than the per-subject limit of live ones. It runs in the
// transaction that adds them, so concurrent Issues cannot both pass it.
func (db *DB) checkLimit(tx *bolt.Tx, subject string, now int64, n int) error {
	if db.limit <= 0 {
		return nil
	}
	prefix := subjectPrefix(subject)
	total, live := 0, 0
	c := tx.Bucket(bucketSubjects).Cursor()
	for k, _ := c.Seek(prefix); k != nil && hasPrefix(k, prefix); k, _ = c.Next() {
		total++
	}
	if total+n <= db.limit {
		return nil
	}
	// Expired tokens the sweeper has not reached yet do not count.
	for k, _ := c.Seek(prefix); k != nil && hasPrefix(k, prefix); k, _ = c.Next() {
		h, rec, err := getByID(tx, k[len(prefix):])
		if errors.Is(err, ErrNotFound) {
			continue // being swept
		}
		if err != nil {
			return err
		}
		if used, swept := db.cache.lastUse(h, &rec); !swept && now < rec.deadlineAt(used) {
			live++
		}
	}
	if live+n > db.limit {
		return fmt.Errorf("%w: %d live tokens, limit %d", ErrTokenLimit, live, db.limit)
	}
	return nil
}

// IssueRequest is one token to create with [DB.IssueBatch].
type IssueRequest struct {
	Subject  string
	Policy   Policy            // zero: the store's default
	Metadata map[string]string // optional
}

// Issued is a token created by [DB.IssueBatch].
type Issued struct {
	Token string
	Info  Info
}

// IssueBatch creates many tokens in one durable transaction: all or none.
// It is for provisioning (a fleet of devices, a migration) where one
// transaction per token would cost an fsync each. The per-subject limit
// applies to the batch as a whole.
func (db *DB) IssueBatch(ctx context.Context, reqs []IssueRequest) ([]Issued, error) {
	if err := db.begin(ctx, true); err != nil {
		return nil, wrap("issue batch", err)
	}
	type item struct {
		h   Hash
		rec record
	}
	items := make([]item, len(reqs))
	out := make([]Issued, len(reqs))
	perSubject := map[string]int{}
	for i, r := range reqs {
		if err := ValidateSubject(r.Subject); err != nil {
			return nil, wrap("issue batch", fmt.Errorf("request %d: %w", i, err))
		}
		if err := errors.Join(r.Policy.Validate(), ValidateMetadata(r.Metadata)); err != nil {
			return nil, wrap("issue batch", fmt.Errorf("request %d: %w", i, err))
		}
		token, h, rec, err := db.newRecord(r.Subject, r.Policy, maps.Clone(r.Metadata))
		if err != nil {
			return nil, err
		}
		if len(rec.meta) == 0 {
			rec.meta = nil
		}
		items[i] = item{h, rec}
		out[i] = Issued{Token: token, Info: rec.info(rec.lastUsed)}
		perSubject[r.Subject]++
	}
	// bbolt inserts far faster in key order: sort each bucket's puts.
	var puts [entryBuckets][]kv
	for i := range items {
		for b, e := range items[i].rec.indexEntries(items[i].h) {
			puts[b] = append(puts[b], e)
		}
	}
	for _, p := range puts {
		slices.SortFunc(p, func(a, b kv) int { return compareBytes(a.k, b.k) })
	}
	var refused error
	err := db.commit.update(func(tx *bolt.Tx) error {
		for s, n := range perSubject {
			// Nothing is written yet: commit the empty transaction rather
			// than roll back (see groupRefusal in commit.go).
			if refused = db.checkLimit(tx, s, db.nowMs(), n); refused != nil {
				return nil
			}
		}
		tokens := tx.Bucket(bucketTokens)
		for i, e := range puts[inTokens] {
			// As putRecord: a hash the file holds, or twice in the batch.
			if tokens.Get(e.k) != nil || i > 0 && string(puts[inTokens][i-1].k) == string(e.k) {
				refused = errHashCollision
				return nil // nothing written: commit, not roll back
			}
		}
		for i, p := range puts {
			b := tx.Bucket(entryBucket[i])
			for _, e := range p {
				if err := putEntry(b, i, e.k, e.v); err != nil {
					return err
				}
			}
		}
		return addCount(tx, int64(len(items)))
	})
	if err == nil {
		err = refused
	}
	if err != nil {
		return nil, wrap("issue batch", boltErr(err))
	}
	db.ctr.issued.Add(uint64(len(items)))
	return out, nil
}
