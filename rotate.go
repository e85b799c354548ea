package tokenstore

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	bolt "go.etcd.io/bbolt"
)

// MaxGrace is the longest grace [WithGrace] accepts. A grace exists for a
// client that rotated but lost the response (GitLab added one for
// automation stranded that way); a longer one would let a stolen old token
// keep working beside the new one.
const MaxGrace = 10 * time.Minute

// RotateParams is what [RotateOption]s set. Backends read it with
// [NewRotateParams]; applications use [WithGrace] and [WithNewFamily].
type RotateParams struct {
	// Grace is how long the old token keeps working after the Rotate, and
	// during which rotating it again returns the same successor. It ends
	// early when the successor is first used. Zero: no grace.
	Grace time.Duration
	// NewFamily starts a new family with the successor: its cap counts
	// from now, and reuse of the old token no longer revokes it.
	NewFamily bool
}

// RotateOption adjusts one Rotate call.
type RotateOption func(*RotateParams)

// WithGrace keeps the old token working for d after the Rotate, or until
// the successor is first used, whichever comes first. Within it, rotating
// the old token again returns the same successor (for a client that lost
// the response), never a second one. d is at most [MaxGrace], and is
// rounded up to a whole millisecond.
func WithGrace(d time.Duration) RotateOption { return func(p *RotateParams) { p.Grace = d } }

// WithNewFamily makes the successor the first token of a new family: its
// cap (Policy.MaxLifetime) counts from now instead of from the family's
// first token. Use it only where the holder has authenticated again, since
// it is the one way a rotation extends a token's life.
func WithNewFamily() RotateOption { return func(p *RotateParams) { p.NewFamily = true } }

// NewRotateParams applies opts in order and checks the result: a grace
// below zero or above [MaxGrace] is [ErrInvalidGrace]. A grace is rounded
// up to a whole millisecond, the stores' resolution, so that a grace
// below one is not silently none.
func NewRotateParams(opts ...RotateOption) (RotateParams, error) {
	var p RotateParams
	for _, o := range opts {
		if o != nil {
			o(&p)
		}
	}
	if p.Grace < 0 || p.Grace > MaxGrace {
		return p, fmt.Errorf("%w: %s, want 0 to %s", ErrInvalidGrace, p.Grace, MaxGrace)
	}
	if r := p.Grace % time.Millisecond; r != 0 { // MaxGrace is whole: no overflow
		p.Grace += time.Millisecond - r
	}
	return p, nil
}

// Rotate issues the successor of token and retires token, in one durable
// transaction, and returns the successor and its Info. The successor has
// token's subject, policy and metadata (scopes included) and its family:
// Info.FamilyID is the ID of the family's first token, and the family's
// cap counts from that token's creation. So the successor's deadline
// never exceeds the first token's created + cap, where the cap is
// Policy.MaxLifetime for Sliding and the TTL for Absolute: rotating an
// Absolute token gives a successor with the first token's ExpiresAt, and
// rotating a Sliding one restarts the idle window within the cap
// (min(now + idle, first created + max)). [WithNewFamily] starts a new
// family instead: FamilyID is the successor's own ID and the cap counts
// from now. Counts: Issued+1, Revoked+1.
//
// token must be live: Rotate returns the errors Validate would
// ([ErrMalformed], [ErrNotFound], [ErrExpired], [ErrReused]); a token
// whose family's cap has passed is ErrExpired.
//
// Rotate leaves a tombstone of token, kept until token's own deadline as
// of the rotation, then swept. Presented to Validate, Lookup or Rotate
// after its grace while the tombstone lives, token is [ErrReused] and
// every live token of its family is revoked in the same transaction
// (RFC 9700 §4.14.2): one of two parties holds a stolen copy. After the
// tombstone's deadline token is ErrNotFound, as it would have expired.
//
// With [WithGrace](d), until d after the rotation and while the successor
// has not been used (the first Validate, Lookup or Rotate of it ends the
// grace), token still works: Validate and Lookup return its own Info
// (ExpiresAt at most the grace's end), and Rotate of it returns the same
// successor, never a second one, for a client that lost the response.
// That is possible because the successor is derived from token by
// HMAC-SHA256 with a random key kept in the file: only token's holder can
// compute it. Rotate in the grace after the successor was revoked or has
// expired is ErrNotFound or ErrExpired. The successor's use that ends the
// grace is known in memory at once, and in the file once the use is
// written (Options.TouchInterval): a crash in between can reopen the
// grace until its end. A Lookup of the successor is known in memory
// only: a restart can reopen the grace too. (A Validate of the successor
// in the rotation's millisecond is counted 1 ms after it, so that the
// file keeps it.) A clock set back reopens a grace that time alone ended,
// as it stretches a lifetime, but never one that the successor's use, a
// reuse of token or [DB.RevokeFamily] ended, also after the grace's end by
// the clock.
func (db *DB) Rotate(ctx context.Context, token string, opts ...RotateOption) (string, Info, error) {
	if err := db.begin(ctx, true); err != nil {
		return "", Info{}, wrap("rotate", err)
	}
	p, err := NewRotateParams(opts...)
	if err != nil {
		return "", Info{}, wrap("rotate", err)
	}
	old, err := db.format.Parse(token)
	if err != nil {
		return "", Info{}, err
	}
	var (
		newToken string
		h        Hash
	)
	newID, err := uuid.NewV7()
	if err != nil {
		return "", Info{}, wrap("rotate", err)
	}
	var (
		rec     record
		outcome int
		revoked int
		family  uuid.UUID
	)
	const (
		rotated = iota + 1
		inGrace
		reused
	)
	del := deletes{cache: db.cache}
	err = db.commit.run(func(tx *bolt.Tx) error {
		outcome, revoked = 0, 0
		now := db.nowMs()
		prev, err := getRecord(tx, old)
		if errors.Is(err, ErrNotFound) {
			t, err := getTombstone(tx, old)
			switch {
			case err != nil:
				return refuse(err)
			case now >= t.death:
				return refuse(ErrNotFound) // it would have expired
			}
			succ, err := db.graceOpen(tx, &t, now)
			switch {
			case err == nil:
				next, ok := db.format.Rederive(db.rotationKey, token, t.successor)
				if !ok {
					return refuse(fmt.Errorf("%w: the tombstone of token %s names another successor (was the rotation key changed?)", ErrCorrupt, t.id))
				}
				newToken, h = next, t.successor
				rec = succ
				outcome = inGrace
				return refuse(errGraceAnswer) // nothing written
			case errors.Is(err, errGraceClosed):
				family, outcome = t.family, reused
				revoked, err = db.revokeFamily(tx, &del, t.family)
				return err
			default:
				return refuse(err)
			}
		}
		if err != nil {
			return refuse(err)
		}
		// A token the sweep has marked is expired, as Validate answers
		// it (see cache.go): rotated, it gave a successor to a token
		// answered expired a moment before, and the sweep would find it
		// gone.
		used, swept := db.cache.lastUse(old, &prev)
		deadline := prev.deadlineAt(used)
		if swept || now >= deadline {
			return refuse(ErrExpired)
		}
		newToken, h = db.successorOf(token, now)
		rec = record{id: newID, subject: prev.subject, created: now, lastUsed: now,
			policy: prev.policy, meta: prev.meta, family: prev.familyID(), born: prev.birth()}
		if p.NewFamily {
			rec.family, rec.born = newID, now
		}
		rec.filed = rec.deadline()
		graceEnd := now + p.Grace.Milliseconds()
		if graceEnd == 0 { // 0 is "ended for good": a grace to 1970 ends 1 ms sooner
			graceEnd = -1
		}
		t := tombstone{id: prev.id, family: prev.familyID(), successor: h, created: prev.created,
			used: used, graceEnd: graceEnd, death: deadline}
		outcome = rotated
		return errors.Join(del.delete(tx, old, &prev), putRecord(tx, h, &rec), putTombstone(tx, old, &t))
	})
	del.end()
	if outcome == inGrace && errors.Is(err, errGraceAnswer) {
		used, _ := db.cache.lastUse(h, &rec)
		return newToken, rec.info(used), nil
	}
	if err != nil {
		return "", Info{}, wrap("rotate", boltErr(err))
	}
	if outcome == reused {
		db.noteReuse(family, revoked)
		return "", Info{}, wrap("rotate", ErrReused)
	}
	db.ctr.issued.Add(1)
	db.ctr.revoked.Add(1)
	return newToken, rec.info(rec.lastUsed), nil
}

var (
	// errGraceAnswer is Rotate's refusal, inside its transaction, that
	// wrote nothing because the answer is the existing successor.
	errGraceAnswer = errors.New("tokenstore: in grace")
	// errGraceClosed is graceOpen's answer for a grace that has ended.
	errGraceClosed = errors.New("tokenstore: grace closed")
)

// graceOpen reports whether the retired token of t still works at now:
// nil, with the successor's record (which every caller needs), when its
// grace has not ended, its successor lives and has not been used;
// errGraceClosed when the grace has ended (by time, by the
// successor's first use, which a Rotate of it also is, or by a family
// revocation); ErrNotFound or ErrExpired when the successor was revoked
// or has expired within the grace.
func (db *DB) graceOpen(tx *bolt.Tx, t *tombstone, now int64) (record, error) {
	if t.graceEnd == 0 || now >= t.graceEnd { // 0: ended for good (revokeFamily), also by a clock before 1970
		return record{}, errGraceClosed
	}
	rec, err := getRecord(tx, t.successor)
	if errors.Is(err, ErrNotFound) {
		if _, err := getTombstone(tx, t.successor); !errors.Is(err, ErrNotFound) {
			return record{}, errGraceClosed // the successor was rotated: used
		}
		return record{}, ErrNotFound
	}
	if err != nil {
		return record{}, err
	}
	used, looked, swept := db.cache.successorUse(t.successor, &rec)
	if used > rec.created || looked {
		return record{}, errGraceClosed
	}
	// A successor the sweep has marked is expired, whatever the clock
	// read here (see cache.go): its predecessor's grace ends with it.
	if swept || now >= rec.deadlineAt(used) {
		return record{}, ErrExpired
	}
	return rec, nil
}

// rotatedAway answers Validate or Lookup of h, which the store holds no
// record of: ErrNotFound unless a tombstone of h lives. Within its grace
// it returns the retired token's own Info; after, it revokes the family
// and returns ErrReused.
func (db *DB) rotatedAway(h Hash, now int64) (Info, error) {
	var (
		t     tombstone
		succ  record
		grace error
	)
	err := view(db.bolt, func(tx *bolt.Tx) (err error) {
		if t, err = getTombstone(tx, h); err != nil {
			return err
		}
		if now >= t.death {
			return ErrNotFound
		}
		succ, grace = db.graceOpen(tx, &t, now)
		return nil
	})
	switch {
	case err != nil:
		return Info{}, boltErr(err)
	case errors.Is(grace, errGraceClosed):
		return Info{}, db.reuse(h)
	case grace != nil:
		return Info{}, grace
	}
	if _, reused := db.roReused.Load(h); reused {
		return Info{}, db.reuse(h) // a reuse ended the grace: read-only, it is kept in memory
	}
	info := succ.info(succ.lastUsed) // subject, policy and metadata are the retired token's
	info.ID, info.FamilyID = t.id, t.family
	info.CreatedAt, info.LastUsedAt = time.UnixMilli(t.created), time.UnixMilli(t.used)
	info.ExpiresAt = time.UnixMilli(min(t.death, t.graceEnd))
	return info, nil
}

// reuse revokes the family of h's tombstone, h having been presented
// after its grace, and returns ErrReused (or why it could not).
func (db *DB) reuse(h Hash) error {
	var family uuid.UUID
	n := 0
	if db.ro {
		_ = view(db.bolt, func(tx *bolt.Tx) error {
			t, err := getTombstone(tx, h)
			family = t.family
			return err
		})
		db.roReused.Store(h, struct{}{}) // see rotatedAway
		db.ctr.reused.Add(1)
		db.reuseLog.Warn(db.log, db.now(), family.String(), false, "tokenstore: token reused after rotation; family not revoked: the store is read-only")
		return ErrReused
	}
	del := deletes{cache: db.cache}
	err := db.commit.run(func(tx *bolt.Tx) error {
		n = 0
		t, err := getTombstone(tx, h)
		if err != nil {
			return refuse(err)
		}
		now := db.nowMs()
		if now >= t.death {
			return refuse(ErrNotFound)
		}
		family = t.family
		n, err = db.revokeFamily(tx, &del, t.family)
		return err
	})
	del.end()
	if err != nil {
		return boltErr(err)
	}
	db.noteReuse(family, n)
	return ErrReused
}

// revokeInGrace is Revoke of h, which the store holds no record of:
// ErrNotFound unless h was rotated away and its grace is open (h
// validates), in which case it deletes h's successor and h's tombstone,
// so that h answers as a revoked token does.
func (db *DB) revokeInGrace(h Hash) error {
	del := deletes{cache: db.cache}
	err := db.commit.run(func(tx *bolt.Tx) error {
		t, err := getTombstone(tx, h)
		if err != nil {
			return refuse(err)
		}
		now := db.nowMs()
		if now >= t.death {
			return refuse(ErrNotFound) // h does not validate: nothing to revoke
		}
		succ, err := db.graceOpen(tx, &t, now)
		if err != nil {
			return refuse(ErrNotFound) // h does not validate: nothing to revoke
		}
		return errors.Join(del.delete(tx, t.successor, &succ), deleteTombstone(tx, h, &t))
	})
	del.end()
	if err != nil {
		return boltErr(err)
	}
	db.ctr.revoked.Add(1)
	return nil
}

// noteReuse counts and logs a reuse that revoked n tokens of family. The
// log is rate-limited per family, but for a line that revoked tokens: only
// replays are held back.
func (db *DB) noteReuse(family uuid.UUID, n int) {
	db.ctr.reused.Add(1)
	db.ctr.revoked.Add(uint64(n))
	db.reuseLog.Warn(db.log, db.now(), family.String(), n > 0, "tokenstore: token reused after rotation; family revoked", "revoked", n)
}

// rotationKeyLen is the size of the successor-derivation key.
const rotationKeyLen = 32

func newRotationKey() []byte {
	k := make([]byte, rotationKeyLen)
	_, _ = rand.Read(k) // never fails since Go 1.24
	return k
}

// successorOf derives the successor of token issued at now (Unix ms)
// under the file's rotation key (Format.Derive): only token's holder (and
// the file's) can compute it, which is what makes a repeated Rotate within
// the grace return the same successor (Format.Rederive, with the time its
// hash in the tombstone carries) though the store keeps only hashes.
func (db *DB) successorOf(token string, now int64) (string, Hash) {
	return db.format.Derive(db.rotationKey, token, time.UnixMilli(now))
}
