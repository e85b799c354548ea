package tokenstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
)

type famEnv struct {
	t    *testing.T
	db   *DB
	now  atomic.Int64
	logs *errorCount
}

func newFamEnv(t *testing.T) *famEnv {
	e := &famEnv{t: t, logs: &errorCount{}}
	e.now.Store(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli())
	db, err := Open(filepath.Join(t.TempDir(), "t.db"), &Options{
		Now:           func() time.Time { return time.UnixMilli(e.now.Load()) },
		SweepInterval: -1, TouchInterval: time.Hour, Policy: Sliding(time.Hour, 10*time.Hour),
		Logger: slog.New(e.logs),
	})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, db.Close()) })
	e.db = db
	return e
}

func (e *famEnv) advance(d time.Duration) { e.now.Add(d.Milliseconds()) }

func (e *famEnv) issue() (string, Info) {
	tok, info, err := e.db.Issue(e.t.Context(), "user")
	require.NoError(e.t, err)
	return tok, info
}

func (e *famEnv) rotate(tok string, opts ...RotateOption) (string, Info) {
	next, info, err := e.db.Rotate(e.t.Context(), tok, opts...)
	require.NoError(e.t, err)
	return next, info
}

func (e *famEnv) hash(tok string) Hash {
	h, err := e.db.format.Parse(tok)
	require.NoError(e.t, err)
	return h
}

func (e *famEnv) rawHash(bucket []byte, h Hash) []byte { return e.raw(bucket, h[:]) }

func (e *famEnv) raw(bucket []byte, k []byte) []byte {
	var v []byte
	require.NoError(e.t, e.db.bolt.View(func(tx *bolt.Tx) error {
		v = bytes.Clone(tx.Bucket(bucket).Get(k))
		return nil
	}))
	return v
}

// A never-rotated record is a version-2 record, byte for byte what the
// build before families wrote: no byte more. A rotated one is version 3,
// 24 bytes more (family id and birth), and reads back whole.
func TestRecord_FamilyCost(t *testing.T) {
	e := newFamEnv(t)
	a, aInfo := e.issue()
	rec := record{id: aInfo.ID, subject: "user", created: aInfo.CreatedAt.UnixMilli(), policy: aInfo.Policy}
	v := e.rawHash(bucketTokens, e.hash(a))
	assert.Equal(t, byte(recordVersion), v[0])
	assert.Len(t, v, recordFixed+len("user")+1+4, "version 2: fixed part, subject, metadata count, checksum")
	assert.Equal(t, rec.encode(nil), v)

	e.advance(time.Minute)
	b, bInfo := e.rotate(a)
	v = e.rawHash(bucketTokens, e.hash(b))
	assert.Equal(t, byte(recordVersionFamily), v[0])
	assert.Len(t, v, recordFixed+len("user")+1+familySize+4)
	got, err := decodeRecord(v)
	require.NoError(t, err)
	assert.Equal(t, aInfo.ID, got.familyID())
	assert.Equal(t, aInfo.CreatedAt.UnixMilli(), got.birth())
	assert.Equal(t, bInfo.ID, got.id)
	assert.Equal(t, v, got.encode(nil))

	// The tombstone of A: 101 bytes, its checksum over its key too.
	tv := e.rawHash(bucketTombstones, e.hash(a))
	require.Len(t, tv, tombstoneLen)
	ts, err := decodeTombstone(e.hash(a), tv)
	require.NoError(t, err)
	assert.Equal(t, aInfo.ID, ts.id)
	assert.Equal(t, e.hash(b), ts.successor)
	_, err = decodeTombstone(e.hash(b), tv)
	require.ErrorIs(t, err, ErrCorrupt, "filed under another hash")

	// A version-3 record whose family bytes are cut short is ErrCorrupt,
	// never a token of another family.
	short := append(bytes.Clone(v[:recordFixed+4]), 0, 0, 0, 0)
	_, err = decodeRecord(short)
	require.ErrorIs(t, err, ErrCorrupt)
}

// A sweep with no tombstone due writes nothing, however many the file
// holds; with some due, it deletes those and their entries only.
func TestSweep_TombstonesDueOnly(t *testing.T) {
	e := newFamEnv(t)
	ctx := t.Context()
	var early []string
	for i := range 40 {
		tok, _ := e.issue()
		if i%10 == 0 {
			// Used late, these live longer than the others.
			e.advance(30 * time.Minute)
			_, err := e.db.Validate(ctx, tok)
			require.NoError(t, err)
			e.now.Add(-30 * time.Minute.Milliseconds())
		}
		e.rotate(tok)
		early = append(early, tok)
	}
	began := e.db.commit.began.Load()
	n, err := e.db.Sweep(ctx)
	require.NoError(t, err)
	assert.Zero(t, n)
	assert.Equal(t, began, e.db.commit.began.Load(), "nothing due: no write transaction")

	e.advance(time.Hour) // the 36 tombstones never used are due; the 4 used are not
	_, err = e.db.Sweep(ctx)
	require.NoError(t, err)
	var left int
	require.NoError(t, e.db.bolt.View(func(tx *bolt.Tx) error {
		left = tx.Bucket(bucketTombstones).Stats().KeyN
		assert.Equal(t, left, tx.Bucket(bucketTombDue).Stats().KeyN)
		return nil
	}))
	assert.Equal(t, 4, left)
	for i, tok := range early {
		_, err := e.db.Lookup(ctx, tok)
		if i%10 == 0 {
			require.ErrorIs(t, err, ErrReused, "token %d: its tombstone lives", i)
		} else {
			require.ErrorIs(t, err, ErrNotFound, "token %d: swept", i)
		}
	}
	problems, err := e.db.Check(ctx)
	require.NoError(t, err)
	require.Empty(t, problems)
}

// A damaged tombstone costs only itself: Check names it, its token is
// ErrCorrupt (never valid, never a reuse that revokes on bad data), the
// others work, and the sweep steps over it, reporting it once.
func TestTombstone_DamageCostsOnlyItself(t *testing.T) {
	e := newFamEnv(t)
	ctx := t.Context()
	a1, _ := e.issue()
	a2, _ := e.issue()
	e.rotate(a1)
	b2, _ := e.rotate(a2, WithGrace(time.Minute))
	h1 := e.hash(a1)
	require.NoError(t, e.db.boltUpdate(func(tx *bolt.Tx) error {
		v := bytes.Clone(tx.Bucket(bucketTombstones).Get(h1[:]))
		v[90] ^= 0x04 // in its deadline
		return tx.Bucket(bucketTombstones).Put(h1[:], v)
	}))
	problems, err := e.db.Check(ctx)
	require.NoError(t, err)
	require.Len(t, problems, 1, "%q", problems)
	assert.Contains(t, problems[0], "tombstone")
	assert.Contains(t, problems[0], "checksum")

	_, err = e.db.Validate(ctx, a1)
	require.ErrorIs(t, err, ErrCorrupt)
	_, _, err = e.db.Rotate(ctx, a1)
	require.ErrorIs(t, err, ErrCorrupt)
	_, err = e.db.Validate(ctx, a2)
	require.NoError(t, err, "the other tombstone, in its grace")
	_, err = e.db.Validate(ctx, b2)
	require.NoError(t, err)

	e.advance(2 * time.Hour)
	_, err = e.db.Sweep(ctx)
	require.ErrorIs(t, err, ErrCorrupt, "reported")
	_, err = e.db.Sweep(ctx)
	require.NoError(t, err, "once")
	_, err = e.db.Lookup(ctx, a2)
	require.ErrorIs(t, err, ErrNotFound, "the sound tombstone was swept")
	problems, err = e.db.Check(ctx)
	require.NoError(t, err)
	require.Len(t, problems, 1, "%q", problems)
}

// Check verifies the families index both ways: a rotated token without
// its entry (RevokeFamily would miss it) and an entry of nothing.
func TestCheck_FamilyEntries(t *testing.T) {
	e := newFamEnv(t)
	ctx := t.Context()
	a, aInfo := e.issue()
	_, bInfo := e.rotate(a)
	nobody := uuid.Must(uuid.NewV7())
	require.NoError(t, e.db.boltUpdate(func(tx *bolt.Tx) error {
		fam := tx.Bucket(bucketFamilies)
		return errors.Join(
			fam.Delete(append(aInfo.ID[:16:16], bInfo.ID[:]...)),
			fam.Put(append(aInfo.ID[:16:16], nobody[:]...), []byte{}),
		)
	}))
	problems, err := e.db.Check(ctx)
	require.NoError(t, err)
	all := strings.Join(problems, "\n")
	assert.Contains(t, all, fmt.Sprintf("token %s: missing from the families index", bInfo.ID))
	assert.Contains(t, all, "points at no token")
	assert.Len(t, problems, 2, all)
}

// The successor is HMAC-derived: the same for the same token, time and
// key, different for another token or key, a well-formed token carrying
// the time, and found again from the time its hash carries.
func TestSuccessorOf(t *testing.T) {
	e := newFamEnv(t)
	a, _ := e.issue()
	at := e.db.nowMs()
	b, hb := e.db.successorOf(a, at)
	b2, _ := e.db.successorOf(a, at)
	assert.Equal(t, b, b2)
	h, err := e.db.format.Parse(b)
	require.NoError(t, err, "it parses like any token")
	assert.Equal(t, hb, h)
	assert.Equal(t, at, hashMs(hb), "its hash starts with the time")
	again, ok := e.db.format.Rederive(e.db.rotationKey, a, hb)
	assert.True(t, ok)
	assert.Equal(t, b, again, "derived again from the hash's time")
	later, _ := e.db.successorOf(a, at+1)
	assert.NotEqual(t, b, later, "another time, another successor")
	c, _ := e.issue()
	other, _ := e.db.successorOf(c, at)
	assert.NotEqual(t, b, other)
	_, ok = e.db.format.Rederive(e.db.rotationKey, c, hb)
	assert.False(t, ok, "not c's successor")
	saved := e.db.rotationKey
	e.db.rotationKey = newRotationKey()
	moved, _ := e.db.successorOf(a, at)
	_, ok = e.db.format.Rederive(e.db.rotationKey, a, hb)
	e.db.rotationKey = saved
	assert.NotEqual(t, b, moved, "only the file's key derives it")
	assert.False(t, ok, "a changed key is told")
	assert.Len(t, saved, rotationKeyLen)
	assert.Equal(t, saved, e.raw(bucketMeta, metaRotationKey))
}

// A sweep cut short after any of its transactions leaves rotated tokens
// and their families entries as Check accepts; the next sweep finishes,
// with every families entry and tombstone gone.
func TestSweep_CutShortWithFamilies(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	src := filepath.Join(dir, "src.db")
	var now atomic.Int64
	now.Store(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli())
	clock := func() time.Time { return time.UnixMilli(now.Load()) }
	db, err := Open(src, &Options{SweepInterval: -1, Now: clock, Policy: Absolute(time.Hour)})
	require.NoError(t, err)
	var successors []string
	for i := range 12 {
		tok, _, err := db.Issue(ctx, fmt.Sprintf("user-%d", i%3))
		require.NoError(t, err)
		next, _, err := db.Rotate(ctx, tok)
		require.NoError(t, err)
		successors = append(successors, next)
	}
	require.NoError(t, db.Close())
	now.Add((2 * time.Hour).Milliseconds())

	for cut := 1; ; cut++ {
		path := filepath.Join(dir, fmt.Sprintf("cut-%d.db", cut))
		data, err := os.ReadFile(src)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(path, data, 0o600))
		sctx, cancel := context.WithCancel(ctx)
		db, err := Open(path, &Options{SweepInterval: -1, Now: clock, Logger: slog.New(cancelAfter(cut, cancel))})
		require.NoError(t, err)
		db.sweepSize.setAll(chunkSizer{first: 4, lo: 4, hi: 4})
		_, err = db.Sweep(sctx)
		cancel()
		finished := err == nil
		if !finished {
			require.ErrorIs(t, err, context.Canceled)
		}
		problems, err := db.Check(ctx)
		require.NoError(t, err)
		require.Empty(t, problems, "cut after %d transactions", cut)
		for i, tok := range successors {
			_, err := db.Validate(ctx, tok)
			if !errors.Is(err, ErrNotFound) {
				require.ErrorIs(t, err, ErrExpired, "successor %d, cut %d", i, cut)
			}
		}
		_, err = db.Sweep(ctx)
		require.NoError(t, err)
		problems, err = db.Check(ctx)
		require.NoError(t, err)
		require.Empty(t, problems)
		require.NoError(t, db.bolt.View(func(tx *bolt.Tx) error {
			for _, name := range familyBuckets {
				assert.Zero(t, tx.Bucket(name).Stats().KeyN, "cut %d: %s", cut, name)
			}
			return nil
		}))
		require.NoError(t, db.Close())
		if finished {
			break
		}
	}
}

// A successor's first Lookup is kept (cache.looked) whatever the clock
// does after: however many there are (the marks of firstUses, which this
// replaced, were pruned as they grew once the clock read past MaxGrace
// after their creation, and a clock set back then reopened their
// predecessors' graces), at any later or earlier time, and with the cache
// keeping no entries; only the successor's delete (one, or a sweep's
// batch) drops it. A Validate leaves none (its use is the record's), nor
// does a Lookup of a token Rotate did not write or of a successor already
// used.
// lookedUp is successorUse's mark alone.
func (c *cache) lookedUp(h Hash) bool {
	_, looked, _ := c.successorUse(h, &record{})
	return looked
}

func TestCache_LookupMarksLastUntilDelete(t *testing.T) {
	for _, size := range []int{-1, 0, 1024} {
		c := newCache(size)
		succ := func(n int) (Hash, record) {
			rec := testRecord(1000)
			rec.family, rec.born = uuid.Must(uuid.NewV7()), 1000
			return shardHash(n), rec
		}
		const n = 300 // more than firstUses held in a shard before pruning
		for i := range n {
			h, rec := succ(i)
			now := int64(1000) + MaxGrace.Milliseconds() + int64(i) // past any grace by the clock
			_, err := c.lookup(h, now, false, func() (record, error) { return rec, nil })
			require.NoError(t, err)
		}
		for i := range n {
			assert.True(t, c.lookedUp(shardHash(i)), "size %d: successor %d's Lookup is kept", size, i)
		}

		h, rec := succ(n)
		_, err := c.lookup(h, 2000, true, func() (record, error) { return rec, nil })
		require.NoError(t, err)
		assert.False(t, c.lookedUp(h), "size %d: a Validate's use is the record's", size)
		used := rec
		used.lastUsed = 1500
		_, err = c.lookup(shardHash(n+1), 2000, false, func() (record, error) { return used, nil })
		require.NoError(t, err)
		assert.False(t, c.lookedUp(shardHash(n+1)), "size %d: a successor already used", size)
		_, err = c.lookup(shardHash(n+2), 2000, false, func() (record, error) { return testRecord(1000), nil })
		require.NoError(t, err)
		assert.False(t, c.lookedUp(shardHash(n+2)), "size %d: a token Issue wrote", size)

		c.beginDelete(shardHash(0))
		c.endDelete(shardHash(0), true)
		assert.False(t, c.lookedUp(shardHash(0)), "size %d: deleted", size)
		batch := []Hash{shardHash(1), shardHash(2)}
		c.beginDeleteAll(batch)
		c.endDeleteAll(batch, true)
		for _, h := range batch {
			assert.False(t, c.lookedUp(h), "size %d: swept", size)
		}
		assert.True(t, c.lookedUp(shardHash(3)), "size %d: the others stay", size)
	}
}

// Check's problems about tombstones and their entries name the token by
// its ID, or by the last 6 bytes of its hash as a damaged record is named
// (hashName), never by its whole hash: a Check report is printed
// by the CLI and pasted into tickets, and the brief keeps hashes out of
// every message. Each entry kind that holds a hash is damaged here.
func TestCheck_FamilyProblemsNameNoHash(t *testing.T) {
	e := newFamEnv(t)
	ctx := t.Context()
	a1, _ := e.issue()
	a2, _ := e.issue()
	a3, _ := e.issue()
	e.rotate(a1)
	e.rotate(a2)
	e.rotate(a3)
	h1, h2, h3 := e.hash(a1), e.hash(a2), e.hash(a3)
	other := uuid.Must(uuid.NewV7())
	require.NoError(t, e.db.boltUpdate(func(tx *bolt.Tx) error {
		tombs := tx.Bucket(bucketTombstones)
		// a1: its tombstone gone, its tombdue and families entries left.
		// a2: its tombstone's deadline moved (tombdue disagrees).
		t2, err := decodeTombstone(h2, tombs.Get(h2[:]))
		if err != nil {
			return err
		}
		t2.death++
		// a3: a families entry of another family for its tombstone.
		return errors.Join(tombs.Delete(h1[:]), putTombstoneValue(tx, h2, &t2),
			tx.Bucket(bucketFamilies).Put(familyTombKey(other, h3), []byte{}),
			tx.Bucket(bucketTombDue).Put([]byte("short"), []byte{}))
	}))
	problems, err := e.db.Check(ctx)
	require.NoError(t, err)
	all := strings.Join(problems, "\n")
	require.Len(t, problems, 6, all)
	for _, h := range []Hash{h1, h2, h3} {
		assert.NotContains(t, all, fmt.Sprintf("%x", h[20:26]), "more than a hash's last 6 bytes")
		// The three were issued in one millisecond: their first 6
		// bytes are alike, so only the last ones name each.
		assert.Contains(t, all, hashName(h[:]), "the tombstone is still named")
	}
}

// issueRotated issues n tokens to "user" and rotates each: it returns the
// rotated ones, each of which has left a tombstone.
func issueRotated(t *testing.T, db *DB, n int) []string {
	t.Helper()
	var rotated []string
	for range n {
		tok, _, err := db.Issue(t.Context(), "user")
		require.NoError(t, err)
		_, _, err = db.Rotate(t.Context(), tok)
		require.NoError(t, err)
		rotated = append(rotated, tok)
	}
	return rotated
}

// damageTombstone flips a bit in the tombstone of the rotated token tok
// (in its family), in an open store.
func damageTombstone(t *testing.T, db *DB, tok string) {
	t.Helper()
	h := mustParse(t, db, tok)
	require.NoError(t, db.boltUpdate(func(tx *bolt.Tx) error {
		v := bytes.Clone(tx.Bucket(bucketTombstones).Get(h[:]))
		v[20] ^= 0x04 // in its family
		return tx.Bucket(bucketTombstones).Put(h[:], v)
	}))
}

// A damaged tombstone is reported once (later sweeps step over it), so a
// sweep that meets it and then stops on another error (ctx, a failed
// write) must report it with that error, or it is never reported at all.
func TestSweep_DamagedTombstoneReportedWhenCutShort(t *testing.T) {
	ctx := t.Context()
	var now atomic.Int64
	now.Store(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli())
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	db, err := Open(filepath.Join(t.TempDir(), "t.db"), &Options{
		Now: func() time.Time { return time.UnixMilli(now.Load()) }, SweepInterval: -1, Policy: Absolute(time.Hour),
		Logger: slog.New(cancelAfter(1, cancel)), // after the first token transaction
	})
	require.NoError(t, err)
	defer func() { require.NoError(t, db.Close()) }()
	rotated := issueRotated(t, db, 2)
	_, _, err = db.Issue(ctx, "user")
	require.NoError(t, err)
	damageTombstone(t, db, rotated[0])

	now.Add(2 * time.Hour.Milliseconds())
	_, err = db.Sweep(sctx)
	require.ErrorIs(t, err, context.Canceled)
	require.ErrorIs(t, err, ErrCorrupt, "the damaged tombstone, met before the sweep was cut short")
	n, err := db.Sweep(ctx)
	require.NoError(t, err, "reported once")
	assert.Equal(t, 3, n, "the sweep finished: the two successors and the third token")
}

// A retry within the grace re-derives the successor from the time its
// hash in the tombstone carries, minutes after the rotation; under a
// rotation key changed since, it cannot, and says so (ErrCorrupt) rather
// than hand out another token.
func TestRotate_GraceRetryRederives(t *testing.T) {
	e := newFamEnv(t)
	a, _ := e.issue()
	e.advance(time.Second)
	b, bInfo := e.rotate(a, WithGrace(5*time.Minute))
	for range 3 {
		e.advance(time.Minute)
		again, info := e.rotate(a, WithGrace(5*time.Minute))
		require.Equal(t, b, again, "the same successor")
		require.Equal(t, bInfo.ID, info.ID)
	}
	e.db.rotationKey = newRotationKey()
	_, _, err := e.db.Rotate(t.Context(), a, WithGrace(5*time.Minute))
	require.ErrorIs(t, err, ErrCorrupt)
	assert.Contains(t, err.Error(), "rotation key changed")
	assert.NotContains(t, err.Error(), a)
	_, err = e.db.Validate(t.Context(), b)
	require.NoError(t, err, "the successor is intact")
}

// A grace retry returns the same successor whatever the clock did since
// the rotation (stepped back before it, or frozen), after a restart, and
// for a rotation an earlier build made, whose successor carries no time:
// the successor is found from its hash in the tombstone, never from now.
func TestRotate_GraceRetryClockAndFormat(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "t.db")
	var now atomic.Int64
	now.Store(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli())
	o := &Options{Now: func() time.Time { return time.UnixMilli(now.Load()) }, SweepInterval: -1, Policy: Sliding(time.Hour, 10*time.Hour)}
	db, err := Open(path, o)
	require.NoError(t, err)
	a, _, err := db.Issue(ctx, "user")
	require.NoError(t, err)
	c, _, err := db.Issue(ctx, "user")
	require.NoError(t, err)
	now.Add(1000)
	b, bInfo, err := db.Rotate(ctx, a, WithGrace(5*time.Minute))
	require.NoError(t, err)

	// c rotated as a build before tokens carried a time did: its
	// successor derived without one (Hash = SHA-256).
	ch, err := db.format.Parse(c)
	require.NoError(t, err)
	d, dh := db.format.derive(db.rotationKey, c, -1)
	del := deletes{cache: db.cache} // ended once the transaction has (deletes.end)
	require.NoError(t, db.commit.run(func(tx *bolt.Tx) error {
		prev, err := getRecord(tx, ch)
		require.NoError(t, err)
		n := db.nowMs()
		id := uuid.Must(uuid.NewV7())
		rec := record{id: id, subject: prev.subject, created: n, lastUsed: n, policy: prev.policy, family: prev.id, born: prev.created}
		rec.filed = rec.deadline()
		tomb := tombstone{id: prev.id, family: prev.id, successor: dh, created: prev.created, used: prev.lastUsed, graceEnd: n + 5*time.Minute.Milliseconds(), death: prev.deadline()}
		return errors.Join(del.delete(tx, ch, &prev), putRecord(tx, dh, &rec), putTombstone(tx, ch, &tomb))
	}))
	del.end()

	retry := func(why string) {
		t.Helper()
		again, info, err := db.Rotate(ctx, a, WithGrace(5*time.Minute))
		require.NoError(t, err, why)
		assert.Equal(t, b, again, why)
		assert.Equal(t, bInfo.ID, info.ID, why)
		again, _, err = db.Rotate(ctx, c, WithGrace(5*time.Minute))
		require.NoError(t, err, why)
		assert.Equal(t, d, again, "%s: the successor an earlier build derived", why)
	}
	retry("at once")
	now.Add(-30_000)
	retry("the clock stepped back before the rotation")
	require.NoError(t, db.Close())
	db, err = Open(path, o)
	require.NoError(t, err)
	defer func() { require.NoError(t, db.Close()) }()
	now.Add(60_000)
	retry("after a restart")
	problems, err := db.Check(ctx)
	require.NoError(t, err)
	assert.Empty(t, problems)
	for _, tok := range []string{b, d} {
		_, err := db.Validate(ctx, tok)
		require.NoError(t, err)
	}
}

// A successor's first use (its Lookup mark, or a Validate's use not yet
// written) must outlive a delete of the successor that did not commit:
// the record stays, and dropping what ended the predecessor's grace with
// the cache entry reopened that grace, so that a stolen old token worked
// again. Here, a sweep cut short before its records pass (ctx, as Close
// or a Sweep deadline does): it had announced the successor's delete,
// then left its record; the clock set back into the grace makes the
// successor live again, and the old token must stay ErrReused.
func TestGrace_FirstUseOutlivesSweepCutShort(t *testing.T) {
	for _, use := range []string{"Validate", "Lookup"} {
		t.Run(use, func(t *testing.T) {
			t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
			var now atomic.Int64
			now.Store(t0.UnixMilli())
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			db, err := Open(filepath.Join(t.TempDir(), "t.db"), &Options{
				Now:           func() time.Time { return time.UnixMilli(now.Load()) },
				SweepInterval: -1, TouchInterval: time.Hour, Policy: Sliding(time.Hour, 10*time.Hour),
				Logger: slog.New(cancelAfter(1, cancel)), // after the sweep's first transaction
			})
			require.NoError(t, err)
			defer func() { require.NoError(t, db.Close()) }()
			db.sweepSize.setAll(chunkSizer{first: 4, lo: 4, hi: 4})
			a, _, err := db.Issue(t.Context(), "user")
			require.NoError(t, err)
			// a used 50 minutes on, then the clock set back before its
			// rotation: its tombstone outlives b's deadline, so the sweep
			// below leaves it (a tombstone due would go, and a with it).
			now.Add((50 * time.Minute).Milliseconds())
			_, err = db.Validate(t.Context(), a)
			require.NoError(t, err)
			now.Store(t0.UnixMilli() + 60_000)
			b, _, err := db.Rotate(t.Context(), a, WithGrace(time.Minute))
			require.NoError(t, err)
			rotated := now.Load()
			now.Add(10_000)
			if use == "Validate" {
				_, err = db.Validate(t.Context(), b)
			} else {
				_, err = db.Lookup(t.Context(), b)
			}
			require.NoError(t, err)
			now.Add((90 * time.Minute).Milliseconds()) // b has expired (a's tombstone not): the sweep's
			_, err = db.Sweep(ctx)
			require.ErrorIs(t, err, context.Canceled, "cut short after its first transaction")
			now.Store(rotated + 30_000) // back into the grace: b lives again
			_, err = db.Lookup(t.Context(), a)
			require.ErrorIs(t, err, ErrReused, "b's %s ended a's grace; a sweep that did not delete b must not reopen it", use)
		})
	}
}

// The same for a write that deleted the successor and failed (Rotate or
// Revoke of it on a full disk, a commit whose fsync failed): the
// transaction rolled back, the successor stays, and so must its first
// use. The failing write is made here as the store's writes are (deletes,
// committer), its failure an error of its fn.
func TestGrace_FirstUseOutlivesRolledBackDelete(t *testing.T) {
	for _, use := range []string{"Validate", "Lookup"} {
		t.Run(use, func(t *testing.T) {
			e := newFamEnv(t)
			a, _ := e.issue()
			e.advance(time.Second)
			b, _ := e.rotate(a, WithGrace(time.Minute))
			var err error
			if use == "Validate" {
				_, err = e.db.Validate(t.Context(), b)
			} else {
				_, err = e.db.Lookup(t.Context(), b)
			}
			require.NoError(t, err)
			hb := e.hash(b)
			errDisk := errors.New("disk full")
			del := deletes{cache: e.db.cache}
			err = e.db.commit.run(func(tx *bolt.Tx) error {
				rec, err := getRecord(tx, hb)
				require.NoError(t, err)
				return errors.Join(del.delete(tx, hb, &rec), errDisk)
			})
			del.end()
			require.ErrorIs(t, err, errDisk)
			_, err = e.db.Lookup(t.Context(), a)
			require.ErrorIs(t, err, ErrReused, "b's %s ended a's grace; a delete of b that rolled back must not reopen it", use)
		})
	}
}

// A reuse found by a read-only store cannot revoke the family nor close
// the grace in the file; it must still end the grace for that store: a
// clock set back into the grace made the reused token valid again.
func TestGrace_ReadOnlyReuseStaysEnded(t *testing.T) {
	var now atomic.Int64
	now.Store(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli())
	path := filepath.Join(t.TempDir(), "t.db")
	o := &Options{Now: func() time.Time { return time.UnixMilli(now.Load()) }, SweepInterval: -1, Policy: Sliding(time.Hour, 10*time.Hour)}
	db, err := Open(path, o)
	require.NoError(t, err)
	a, _, err := db.Issue(t.Context(), "user")
	require.NoError(t, err)
	_, _, err = db.Rotate(t.Context(), a, WithGrace(time.Minute))
	require.NoError(t, err)
	rotated := now.Load()
	require.NoError(t, db.Close())
	ro := *o
	ro.ReadOnly = true
	db, err = Open(path, &ro)
	require.NoError(t, err)
	defer func() { require.NoError(t, db.Close()) }()
	now.Add(2 * time.Minute.Milliseconds())
	_, err = db.Validate(t.Context(), a)
	require.ErrorIs(t, err, ErrReused)
	now.Store(rotated + 1000)
	_, err = db.Validate(t.Context(), a)
	require.ErrorIs(t, err, ErrReused, "ro: the reuse ended the grace")
}

// panicOnceOn is a slog handler that panics the first time it meets the
// record msg: a user's Logger may panic, and the caller recover.
type panicOnceOn struct {
	msg      string
	panicked atomic.Bool
}

func (p *panicOnceOn) Enabled(context.Context, slog.Level) bool { return true }
func (p *panicOnceOn) WithAttrs([]slog.Attr) slog.Handler       { return p }
func (p *panicOnceOn) WithGroup(string) slog.Handler            { return p }
func (p *panicOnceOn) Handle(_ context.Context, r slog.Record) error {
	if r.Message == p.msg && p.panicked.CompareAndSwap(false, true) {
		panic("logger: " + p.msg)
	}
	return nil
}

// A damaged tombstone met by a sweep that then panicked (the user's
// Logger, on the tombstones' transaction line) was recorded as reported
// and never reported: later sweeps stepped over it in silence. The next
// sweep reports it, once.
func TestSweep_DamagedTombstoneReportedAfterPanic(t *testing.T) {
	ctx := t.Context()
	var now atomic.Int64
	now.Store(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli())
	db, err := Open(filepath.Join(t.TempDir(), "t.db"), &Options{
		Now: func() time.Time { return time.UnixMilli(now.Load()) }, SweepInterval: -1, Policy: Absolute(time.Hour),
		Logger: slog.New(&panicOnceOn{msg: "tokenstore: swept tombstones"}),
	})
	require.NoError(t, err)
	defer func() { require.NoError(t, db.Close()) }()
	rotated := issueRotated(t, db, 2) // one damaged, one sound: the tombstones' transaction runs
	damageTombstone(t, db, rotated[0])

	now.Add(2 * time.Hour.Milliseconds())
	func() {
		defer func() { require.NotNil(t, recover(), "the logger panicked") }()
		_, _ = db.Sweep(ctx)
	}()
	_, err = db.Sweep(ctx)
	require.ErrorIs(t, err, ErrCorrupt, "the damaged tombstone met before the panic is reported")
	_, err = db.Sweep(ctx)
	require.NoError(t, err, "reported once")
}
