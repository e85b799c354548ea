package tokenstore

import (
	"crypto/sha256"
	"errors"
	"hash/crc32"
	mrand "math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
)

// withChecksum returns tok with its checksum recomputed as CRC32 XOR x.
func withChecksum(tok string, x uint32) string {
	b := []byte(tok)
	n := len(b) - checksumLen
	putChecksum(b[n:], crc32String(tok[:n])^x)
	return string(b)
}

// Both versions parse, each to its own hash: an old token (plain CRC32)
// to its SHA-256, a new one (CRC32 XOR checksumV2) to its issue time and
// the SHA-256's first 26 bytes; the new one's first characters are the
// time, and tokens sort as their times.
func TestFormat_Versions(t *testing.T) {
	f, err := NewFormat("acme")
	require.NoError(t, err)
	at := time.Date(2030, 1, 2, 3, 4, 5, 678e6, time.UTC)

	old, oldH := f.generateV1()
	require.Len(t, old, f.Len())
	h, err := f.Parse(old)
	require.NoError(t, err)
	assert.Equal(t, Hash(sha256.Sum256([]byte(old))), h, "an old token's hash is its SHA-256")
	assert.Equal(t, oldH, h)

	tok, newH := f.GenerateAt(at)
	require.Len(t, tok, f.Len(), "the same length as an old token")
	h, err = f.Parse(tok)
	require.NoError(t, err)
	assert.Equal(t, newH, h)
	sum := sha256.Sum256([]byte(tok))
	assert.Equal(t, sum[:26], h[6:], "the SHA-256's first 26 bytes after the time")
	assert.Equal(t, at.UnixMilli(), hashMs(h), "the hash starts with the issue time")
	var ms int64
	for _, c := range []byte(tok[len("acme_"):][:timeLen]) {
		ms = ms*62 + int64(base62Val[c])
	}
	assert.Equal(t, at.UnixMilli(), ms, "the token's first characters are the issue time")

	later, laterH := f.GenerateAt(at.Add(time.Millisecond))
	assert.Less(t, tok[:len("acme_")+timeLen], later[:len("acme_")+timeLen], "tokens sort as their issue times")
	assert.Less(t, string(newH[:]), string(laterH[:]), "so do their hashes")

	// A time outside what a token holds is clamped, not wrapped.
	_, h = f.GenerateAt(time.Unix(-5, 0))
	assert.Equal(t, int64(0), hashMs(h))
	tok, h = f.GenerateAt(time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC))
	assert.Equal(t, int64(maxTokenMs), hashMs(h))
	_, err = f.Parse(tok)
	require.NoError(t, err)

	// Generate is GenerateAt(time.Now()).
	before := time.Now().UnixMilli()
	_, h = f.Generate()
	assert.True(t, before <= hashMs(h) && hashMs(h) <= time.Now().UnixMilli(), "Generate carries the time of the call")
}

// The versions cannot be confused: a token's checksum holds for one
// version at most, and a token made to pass as the other version (its
// checksum recomputed) is another token, with another hash, which the
// store does not know.
func TestFormat_VersionsNotConfused(t *testing.T) {
	f, err := NewFormat("")
	require.NoError(t, err)
	for range 1000 {
		old, oldH := f.generateV1()
		tok, newH := f.GenerateAt(time.UnixMilli(1_900_000_000_000))
		asNew := withChecksum(old, checksumV2)
		asOld := withChecksum(tok, 0)
		require.NotEqual(t, old, asNew)
		require.NotEqual(t, tok, asOld)
		h, err := f.Parse(asNew)
		require.NoError(t, err, "an old token's text with the new checksum is well formed...")
		require.NotEqual(t, oldH, h, "...but it is not the old token")
		require.NotEqual(t, oldH[:16], h[:16])
		h, err = f.Parse(asOld)
		require.NoError(t, err)
		require.NotEqual(t, newH, h)
		require.Equal(t, Hash(sha256.Sum256([]byte(asOld))), h, "read as an old token")
		// Any other checksum is refused.
		for _, x := range []uint32{1, checksumV2 ^ 1, ^uint32(0)} {
			_, err := f.Parse(withChecksum(old, x))
			require.ErrorIs(t, err, ErrMalformed)
			_, err = f.Parse(withChecksum(tok, checksumV2^x))
			require.ErrorIs(t, err, ErrMalformed)
		}
	}

	e := newFamEnv(t)
	e.db.format = f
	old := e.putOld("legacy")
	tok, _ := e.issue()
	for _, forged := range []string{withChecksum(old, checksumV2), withChecksum(tok, 0)} {
		_, err := e.db.Validate(t.Context(), forged)
		require.ErrorIs(t, err, ErrNotFound, "a token recast as the other version")
	}
	_, err = e.db.Validate(t.Context(), old)
	require.NoError(t, err)
	_, err = e.db.Validate(t.Context(), tok)
	require.NoError(t, err)
}

// No one-character typo turns a token of one version into a well-formed
// token of the other (which Parse would accept, and the store answer
// ErrNotFound instead of ErrMalformed), checked exhaustively. For
// equal-length texts CRC32(x) XOR CRC32(x') depends only on the change,
// so a change in the text before the checksum switches versions only if
// the CRC32 of that change (at its distance from the end) is checksumV2:
// none of the 43 places and base62 differences is. A change of one
// checksum digit by d at place j switches versions only if c XOR
// checksumV2 - c = d × 62^j for the token's CRC32 c: that difference
// takes 2^20 values (±2^b for each bit b of checksumV2), none of them one.
func TestFormat_OneCharTypoNeverSwitchesVersion(t *testing.T) {
	deltas := map[byte]bool{}
	for i := range len(base62) {
		for j := range len(base62) {
			deltas[base62[i]^base62[j]] = true
		}
	}
	delete(deltas, 0)
	const n = randomLen1 + 1 // long enough to place a change at each distance
	zero := crc32String(string(make([]byte, n)))
	for d := range randomLen1 {
		for delta := range deltas {
			b := make([]byte, n)
			b[n-1-d] = delta
			require.NotEqual(t, uint32(checksumV2), crc32String(string(b))^zero, "a change of %#x at %d from the end", delta, d)
		}
	}

	steps := map[int64]bool{}
	for j, p := 0, int64(1); j < checksumLen; j, p = j+1, p*62 {
		for d := int64(1); d < 62; d++ {
			steps[d*p], steps[-d*p] = true, true
		}
	}
	var bits []int64
	for b := range 32 {
		if checksumV2>>b&1 == 1 {
			bits = append(bits, 1<<b)
		}
	}
	for m := range 1 << len(bits) {
		var diff int64
		for k, b := range bits {
			if m>>k&1 == 1 {
				diff -= b // the CRC32 has the bit: XOR clears it
			} else {
				diff += b
			}
		}
		require.False(t, steps[diff], "a checksum digit changed by a step of %d", diff)
	}
}

// Parse allocates nothing, for either version.
func TestFormat_ParseAllocs(t *testing.T) {
	f, err := NewFormat("")
	require.NoError(t, err)
	old, _ := f.generateV1()
	tok, _ := f.Generate()
	for _, s := range []string{old, tok} {
		var perr error
		allocs := testing.AllocsPerRun(100, func() { _, perr = f.Parse(s) })
		require.NoError(t, perr)
		assert.Zero(t, allocs)
	}
}

// Rederive finds a successor from the time its hash carries, including
// one a build before the time was in tokens derived (none in it), and
// nothing under another key or from another token.
func TestFormat_Rederive(t *testing.T) {
	f, err := NewFormat("")
	require.NoError(t, err)
	key, other := newRotationKey(), newRotationKey()
	tok, _ := f.Generate()
	at := time.UnixMilli(1_900_000_123_456)
	next, h := f.Derive(key, tok, at)
	again, h2 := f.Derive(key, tok, at)
	assert.Equal(t, next, again, "deterministic given key, token and time")
	assert.Equal(t, h, h2)
	got, ok := f.Rederive(key, tok, h)
	assert.True(t, ok)
	assert.Equal(t, next, got)
	_, ok = f.Rederive(other, tok, h)
	assert.False(t, ok, "another key")
	tok2, _ := f.Generate()
	_, ok = f.Rederive(key, tok2, h)
	assert.False(t, ok, "another token")
	moved, _ := f.Derive(key, tok, at.Add(time.Millisecond))
	assert.NotEqual(t, next, moved)

	legacy, lh := f.derive(key, tok, -1)
	assert.Equal(t, Hash(sha256.Sum256([]byte(legacy))), lh)
	got, ok = f.Rederive(key, tok, lh)
	assert.True(t, ok, "a successor derived before tokens carried a time")
	assert.Equal(t, legacy, got)
}

// Issue and Rotate stamp tokens with the store's clock (Options.Now).
func TestIssue_StoreClockInToken(t *testing.T) {
	e := newFamEnv(t)
	tok, info := e.issue()
	h, err := e.db.format.Parse(tok)
	require.NoError(t, err)
	assert.Equal(t, e.now.Load(), hashMs(h))
	assert.Equal(t, info.CreatedAt.UnixMilli(), hashMs(h))
	e.advance(time.Minute)
	next, info := e.rotate(tok)
	h, err = e.db.format.Parse(next)
	require.NoError(t, err)
	assert.Equal(t, e.now.Load(), hashMs(h))
	assert.Equal(t, info.CreatedAt.UnixMilli(), hashMs(h))
}

// putOld stores a token of the format before v0.1.0 (Hash = SHA-256), as
// a file written by an earlier build holds them, and returns it.
func (e *famEnv) putOld(subject string) string {
	tok, h := e.db.format.generateV1()
	_, _, rec, err := e.db.newRecord(subject, Policy{}, nil)
	require.NoError(e.t, err)
	require.NoError(e.t, e.db.commit.run(func(tx *bolt.Tx) error { return putRecord(tx, h, &rec) }))
	return tok
}

// An old-format token in a file keeps working beside new ones: it
// validates, lists, rotates (with a grace, whose retry returns the same
// successor), and the file checks clean, before and after a reopen.
func TestOldFormatTokenAlongsideNew(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	path := filepath.Join(dir, "t.db")
	var now int64 = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	o := &Options{Now: func() time.Time { return time.UnixMilli(now) }, SweepInterval: -1, Policy: Sliding(time.Hour, 10*time.Hour)}
	db, err := Open(path, o)
	require.NoError(t, err)
	e := &famEnv{t: t, db: db}
	oldA := e.putOld("alice")
	oldB := e.putOld("alice")
	newA, _, err := db.Issue(ctx, "alice")
	require.NoError(t, err)
	require.NoError(t, db.Close())

	db, err = Open(path, o)
	require.NoError(t, err)
	defer func() { require.NoError(t, db.Close()) }()
	for _, tok := range []string{oldA, oldB, newA} {
		info, err := db.Validate(ctx, tok)
		require.NoError(t, err)
		assert.Equal(t, "alice", info.Subject)
	}
	list, err := db.List(ctx, "alice")
	require.NoError(t, err)
	assert.Len(t, list, 3)

	now += 1000
	succ, _, err := db.Rotate(ctx, oldA, WithGrace(time.Minute))
	require.NoError(t, err)
	h, err := db.format.Parse(succ)
	require.NoError(t, err)
	assert.Equal(t, now, hashMs(h), "the successor is a new-format token")
	now += 1000
	again, _, err := db.Rotate(ctx, oldA, WithGrace(time.Minute))
	require.NoError(t, err, "a retry within the grace")
	assert.Equal(t, succ, again, "the same successor")
	_, err = db.Validate(ctx, succ)
	require.NoError(t, err)

	require.NoError(t, db.Revoke(ctx, oldB))
	_, err = db.Validate(ctx, oldB)
	require.True(t, errors.Is(err, ErrNotFound), "revoked: %v", err)
	problems, err := db.Check(ctx)
	require.NoError(t, err)
	assert.Empty(t, problems)
}

// The cache's shards spread tokens of one millisecond: a hash's first
// bytes are the issue time, the same for all of them.
func TestCache_ShardsSpreadOneMillisecond(t *testing.T) {
	f, err := NewFormat("")
	require.NoError(t, err)
	c := newCache(0)
	at := time.UnixMilli(1_900_000_000_000)
	used := map[int]int{}
	for range 64 * 20 {
		_, h := f.GenerateAt(at)
		used[c.shardIndex(h)]++
	}
	assert.Len(t, used, cacheShards, "every shard takes some of 1,280 tokens of one millisecond")
}

// issue10k issues 10,000 tokens to "user" in 40 batches of 250, calling
// between after each batch (a clock it moves gives each batch its own
// millisecond, as tokens issued over time have).
func issue10k(t *testing.T, db *DB, between func()) {
	t.Helper()
	reqs := make([]IssueRequest, 250)
	for i := range reqs {
		reqs[i] = IssueRequest{Subject: "user"}
	}
	for range 40 {
		_, err := db.IssueBatch(t.Context(), reqs)
		require.NoError(t, err)
		between()
	}
}

// The tokens bucket packs its pages while tokens arrive in issue-time
// order (appendFill) and keeps bbolt's default fill in a transaction that
// inserts among its keys: packed pages split by random inserts leave the
// file far larger (putToken).
func TestTokensFill_ByArrivalOrder(t *testing.T) {
	for _, inOrder := range []bool{true, false} {
		path := filepath.Join(t.TempDir(), "t.db")
		ms := int64(1_900_000_000_000)
		db, err := Open(path, &Options{SweepInterval: -1, Now: func() time.Time { return time.UnixMilli(ms) }})
		require.NoError(t, err)
		issue10k(t, db, func() {
			if inOrder {
				ms++
			}
		})
		var fill float64
		var st bolt.BucketStats
		require.NoError(t, db.bolt.View(func(tx *bolt.Tx) error {
			st = tx.Bucket(bucketTokens).Stats()
			return nil
		}))
		fill = float64(st.LeafInuse) / float64(st.LeafPageN*db.bolt.Info().PageSize)
		require.NoError(t, db.Close())
		if inOrder {
			assert.Greater(t, fill, 0.9, "10,000 tokens in time order: leaves packed (%d leaves)", st.LeafPageN)
		} else {
			assert.Less(t, fill, 0.8, "random order: bbolt's default fill (%d leaves)", st.LeafPageN)
			assert.Greater(t, fill, 0.5, "random order: not split into slivers (%d leaves)", st.LeafPageN)
		}
		t.Logf("in order %v: %d leaves, %.0f%% full", inOrder, st.LeafPageN, 100*fill)
	}
}

// In a file that still holds tokens of the earlier format (keyed by their
// SHA-256, anywhere in the tree), new tokens issued in time order land
// between the newest new-format record and the old records after it,
// never after the bucket's last key: they are packed as appends are, not
// left in half-empty leaves (bbolt's default fill for an insert at one
// place). Measured before: 20,000 new tokens beside 20,000 old took 999
// leaves (500 in a file without old tokens; 683 for 20,000 more old ones,
// as the build before new-format tokens stored them).
func TestTokensFill_BesideOldFormat(t *testing.T) {
	path := filepath.Join(t.TempDir(), "t.db")
	ms := int64(1_900_000_000_000)
	db, err := Open(path, &Options{SweepInterval: -1, Now: func() time.Time { return time.UnixMilli(ms) }})
	require.NoError(t, err)
	defer func() { require.NoError(t, db.Close()) }()
	for range 10_000 / 250 {
		require.NoError(t, db.commit.run(func(tx *bolt.Tx) error {
			for range 250 {
				_, h := db.format.generateV1()
				_, _, rec, err := db.newRecord("old", Policy{}, nil)
				require.NoError(t, err)
				if err := putRecord(tx, h, &rec); err != nil {
					return err
				}
			}
			return nil
		}))
	}
	leaves := func() int {
		var st bolt.BucketStats
		require.NoError(t, db.bolt.View(func(tx *bolt.Tx) error { st = tx.Bucket(bucketTokens).Stats(); return nil }))
		return st.LeafPageN
	}
	before := leaves()
	issue10k(t, db, func() { ms++ })
	// A leaf holds about 40 records of this size: 10,000 packed take
	// about 250 leaves, at bbolt's default about 500.
	added := leaves() - before
	t.Logf("10,000 new tokens beside 10,000 old took %d leaves", added)
	assert.Less(t, added, 330, "10,000 new tokens took %d leaves", added)
	problems, err := db.Check(t.Context())
	require.NoError(t, err)
	assert.Empty(t, problems)
}

// putToken keeps appendFill for appends and falls back to the default
// from the first key that is not one, for the rest of the transaction.
func TestPutToken_Fill(t *testing.T) {
	bdb, err := bolt.Open(filepath.Join(t.TempDir(), "b.db"), 0o600, nil)
	require.NoError(t, err)
	defer bdb.Close()
	require.NoError(t, bdb.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket(bucketTokens)
		require.NoError(t, err)
		tune(tx)
		fill := b.FillPercent
		require.Equal(t, appendFill(bdb.Info().PageSize), fill)
		require.NoError(t, putToken(b, []byte{2}, nil))
		require.NoError(t, putToken(b, []byte{3}, nil))
		assert.Equal(t, fill, b.FillPercent, "appends")
		require.NoError(t, putToken(b, []byte{1}, nil))
		assert.Equal(t, bolt.DefaultFillPercent, b.FillPercent, "an insert among the keys")
		require.NoError(t, putToken(b, []byte{4}, nil))
		assert.Equal(t, bolt.DefaultFillPercent, b.FillPercent, "for the rest of the transaction")
		return nil
	}))
	require.NoError(t, bdb.Update(func(tx *bolt.Tx) error {
		tune(tx)
		assert.Equal(t, appendFill(bdb.Info().PageSize), tx.Bucket(bucketTokens).FillPercent, "each transaction starts packed")
		return nil
	}))

	// Hash-shaped keys: an append is a key with none issued less than
	// appendGap after it.
	f, err := NewFormat("")
	require.NoError(t, err)
	at := time.UnixMilli(1_900_000_000_000)
	key := func(d time.Duration) []byte { _, h := f.GenerateAt(at.Add(d)); return h[:] }
	require.NoError(t, bdb.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket([]byte("hashes"))
		require.NoError(t, err)
		fill := appendFill(bdb.Info().PageSize)
		b.FillPercent = fill
		require.NoError(t, putToken(b, key(time.Hour), nil))
		require.NoError(t, putToken(b, key(0), nil))
		assert.Equal(t, fill, b.FillPercent, "an hour before the next key: as at the end")
		require.NoError(t, putToken(b, key(time.Minute), nil))
		assert.Equal(t, fill, b.FillPercent)
		require.NoError(t, putToken(b, key(time.Hour-time.Second), nil))
		assert.Equal(t, bolt.DefaultFillPercent, b.FillPercent, "a second before the next key: among its time's")
		return nil
	}))
}

// crc32String is hash/crc32's IEEE checksum for every length around the
// 8-byte steps and the token's, on random strings.
func TestCRC32String_MatchesHashCRC32(t *testing.T) {
	rng := mrand.New(mrand.NewPCG(3, 4))
	for n := range 130 {
		for range 20 {
			b := make([]byte, n)
			for i := range b {
				b[i] = byte(rng.Uint32())
			}
			require.Equal(t, crc32.ChecksumIEEE(b), crc32String(string(b)), "length %d", n)
		}
	}
}
