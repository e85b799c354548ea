package tokenstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"hash/crc32"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
)

// errorCount counts log records at Error level.
type errorCount struct{ n atomic.Int64 }

func (c *errorCount) Enabled(context.Context, slog.Level) bool { return true }
func (c *errorCount) Handle(_ context.Context, r slog.Record) error {
	if r.Level >= slog.LevelError {
		c.n.Add(1)
	}
	return nil
}
func (c *errorCount) WithAttrs([]slog.Attr) slog.Handler { return c }
func (c *errorCount) WithGroup(string) slog.Handler      { return c }

// damageIDEntry flips a bit in the ids entry of h's token, in an open store.
func damageIDEntry(t *testing.T, db *DB, h Hash) {
	t.Helper()
	require.NoError(t, db.boltUpdate(func(tx *bolt.Tx) error {
		rec, err := decodeRecord(tx.Bucket(bucketTokens).Get(h[:]))
		require.NoError(t, err)
		b := tx.Bucket(bucketIDs)
		v := bytes.Clone(b.Get(rec.id[:]))
		v[20] ^= 0x10 // in the last use
		return b.Put(rec.id[:], v)
	}))
}

// TestFlush_DamagedRecordCostsOnlyItself: a use held in memory for a
// token whose ids entry (where a flush writes, schema 2: the flush reads
// no record) is damaged meanwhile does not stop the other uses being
// written, is reported once, and the token is no longer validated from
// memory.
func TestFlush_DamagedRecordCostsOnlyItself(t *testing.T) {
	ctx := t.Context()
	var now atomic.Int64
	now.Store(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli())
	logs := &errorCount{}
	db, err := Open(filepath.Join(t.TempDir(), "t.db"), &Options{
		Now:           func() time.Time { return time.UnixMilli(now.Load()) },
		SweepInterval: -1, TouchInterval: 24 * time.Hour, Policy: Sliding(time.Hour, 0),
		Logger: slog.New(logs),
	})
	require.NoError(t, err)
	defer db.Close()
	var tokens []string
	for range 3 {
		token, _, err := db.Issue(ctx, "user")
		require.NoError(t, err)
		tokens = append(tokens, token)
	}
	now.Add(time.Minute.Milliseconds())
	for _, token := range tokens {
		_, err := db.Validate(ctx, token) // a use held in memory
		require.NoError(t, err)
	}
	h, err := db.format.Parse(tokens[1])
	require.NoError(t, err)
	damageIDEntry(t, db, h)

	require.NoError(t, db.flush(ctx, false), "the other uses are written")
	require.EqualValues(t, 1, logs.n.Load(), "reported")
	require.Empty(t, db.cache.dirty(), "nothing left to write")
	require.NoError(t, db.flush(ctx, false))
	require.EqualValues(t, 1, logs.n.Load(), "once")
	for i, token := range tokens {
		hh, _ := db.format.Parse(token)
		rec, err := db.read(hh)
		if i == 1 {
			require.ErrorIs(t, err, ErrCorrupt)
			// Not answered from memory: the file decides. (A Validate of a
			// token alive by its creation reads only its intact record,
			// and is right to accept it: see readForUse.)
			_, err = db.Lookup(ctx, token)
			require.ErrorIs(t, err, ErrCorrupt, "not answered from memory")
			continue
		}
		require.NoError(t, err)
		require.Equal(t, now.Load(), rec.lastUsed, "token %d: its use was written", i)
	}
}

// Every report that names a record, a tombstone or an entry by its hash
// tells two tokens of one millisecond apart, and never prints the whole
// hash: a new token's hash starts with its issue time, so its first 6
// bytes named every token of that millisecond alike (and, for a Check of
// a file whose clock was frozen, every token in it).
func TestReports_TellTokensOfOneMillisecondApart(t *testing.T) {
	f, err := NewFormat("")
	require.NoError(t, err)
	at := time.UnixMilli(1_900_000_000_000)
	fam := uuid.Must(uuid.NewV7())
	names := func(h Hash) map[string]string {
		good := (&tombstone{}).encode(h)
		badSum := append([]byte{}, good...)
		badSum[5] ^= 1
		badVersion := append([]byte{}, good...)
		badVersion[0] = tombstoneVersion + 1
		binary.BigEndian.PutUint32(badVersion[tombstoneLen-4:], crc32.Update(crc32.ChecksumIEEE(h[:]), crc32.IEEETable, badVersion[:tombstoneLen-4]))
		out := map[string]string{
			"damaged record":          (&damagedRecord{h: h, err: corrupt("checksum mismatch")}).Error(),
			"damaged record, with ID": (&damagedRecord{h: h, id: fam, err: corrupt("checksum mismatch")}).Error(),
			"tombdue entry":           tombDueEntry(tombDueKey(at.UnixMilli(), h)),
			"families entry":          errFamilyEntry(familyTombKey(fam, h), "no tombstone"),
		}
		for name, v := range map[string][]byte{"tombstone size": good[:10], "tombstone checksum": badSum, "tombstone version": badVersion} {
			_, err := decodeTombstone(h, v)
			require.ErrorIs(t, err, ErrCorrupt, name)
			out[name] = err.Error()
		}
		return out
	}
	_, h1 := f.GenerateAt(at)
	_, h2 := f.GenerateAt(at)
	old, _ := f.generateV1()
	h3 := Hash(sha256.Sum256([]byte(old)))
	n1, n2, n3 := names(h1), names(h2), names(h3)
	for kind, s := range n1 {
		assert.NotEqual(t, s, n2[kind], "%s: two tokens of one millisecond named alike", kind)
		assert.NotEqual(t, s, n3[kind], kind)
		for _, n := range []string{s, n2[kind], n3[kind]} {
			for _, h := range []Hash{h1, h2, h3} {
				assert.NotContains(t, n, hex.EncodeToString(h[:]), "%s: the whole hash", kind)
				assert.NotContains(t, n, hex.EncodeToString(h[6:20]), "%s: more of the hash than a name needs", kind)
			}
		}
	}
}
