package tokenstore_test

// Token families on the file store (issue 17): what the conformance suite
// (tokenstoretest/family.go) cannot see from the Store interface: a real
// file closed and reopened, files written before families, a read-only
// store, the log, and 32 rotations racing on one file.

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tokenstore/tokenstore/internal/logtest"
	bolt "go.etcd.io/bbolt"

	"github.com/tokenstore/tokenstore"
	"github.com/tokenstore/tokenstore/tokenstoretest"
)

var famEpoch = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// famOptions: a manual clock, no background loops, uses written at once
// only by Close.
func famOptions(clock *tokenstoretest.Clock) *tokenstore.Options {
	return &tokenstore.Options{Now: clock.Now, SweepInterval: -1, TouchInterval: time.Hour, Policy: tokenstore.Sliding(time.Hour, 10*time.Hour)}
}

// bucketKeys is each bucket's key count, from FileInfo.
func bucketKeys(t *testing.T, db *tokenstore.DB) map[string]int {
	t.Helper()
	fi, err := db.FileInfo(t.Context())
	require.NoError(t, err)
	out := map[string]int{}
	for _, b := range fi.Buckets {
		out[b.Name] = int(b.Keys)
	}
	return out
}

func requireClean(t *testing.T, db *tokenstore.DB) {
	t.Helper()
	problems, err := db.Check(t.Context())
	require.NoError(t, err)
	require.Empty(t, problems)
}

// Tombstones, graces and families are in the file: a Close and an Open
// keep every answer.
func TestFamily_SurvivesReopen(t *testing.T) {
	ctx := t.Context()
	clock := tokenstoretest.NewClockAt(famEpoch)
	path := filepath.Join(t.TempDir(), "tokens.db")
	db, err := tokenstore.Open(path, famOptions(clock))
	require.NoError(t, err)

	a, aInfo, err := db.Issue(ctx, "user")
	require.NoError(t, err)
	x, xInfo, err := db.Issue(ctx, "user")
	require.NoError(t, err)
	clock.Advance(time.Minute)
	b, bInfo, err := db.Rotate(ctx, a, tokenstore.WithGrace(5*time.Minute))
	require.NoError(t, err)
	y, yInfo, err := db.Rotate(ctx, x)
	require.NoError(t, err)
	clock.Advance(time.Minute)
	z, zInfo, err := db.Rotate(ctx, y)
	require.NoError(t, err)
	assert.Equal(t, xInfo.ID, yInfo.FamilyID)
	assert.Equal(t, xInfo.ID, zInfo.FamilyID)
	requireClean(t, db)
	require.NoError(t, db.Close())
	_, _, err = tokenstore.Compact(path, famOptions(clock))
	require.NoError(t, err, "Compact copies the buckets of families too")

	db, err = tokenstore.Open(path, famOptions(clock))
	require.NoError(t, err)
	defer func() { require.NoError(t, db.Close()) }()
	requireClean(t, db)

	// A's grace is still open: A answers as itself, and a retried Rotate
	// gives the same successor.
	got, err := db.Lookup(ctx, a)
	require.NoError(t, err)
	assert.Equal(t, aInfo.ID, got.ID)
	assert.Equal(t, aInfo.ID, got.FamilyID)
	assert.True(t, famEpoch.Add(6*time.Minute).Equal(got.ExpiresAt), "the grace's end: %s", got.ExpiresAt)
	again, againInfo, err := db.Rotate(ctx, a, tokenstore.WithGrace(5*time.Minute))
	require.NoError(t, err)
	assert.Equal(t, b, again)
	assert.Equal(t, bInfo.ID, againInfo.ID)

	// Z's family is on file: a reuse of Y (rotated, no grace) revokes Z.
	_, err = db.Validate(ctx, y)
	require.ErrorIs(t, err, tokenstore.ErrReused)
	_, err = db.Validate(ctx, z)
	require.ErrorIs(t, err, tokenstore.ErrNotFound)
	_, err = db.Validate(ctx, x)
	require.ErrorIs(t, err, tokenstore.ErrReused, "X's tombstone too")

	// RevokeFamily finds B through its families entry; A's grace ends.
	n, err := db.RevokeFamily(ctx, aInfo.ID)
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	_, err = db.Validate(ctx, a)
	require.ErrorIs(t, err, tokenstore.ErrReused)
	requireClean(t, db)
	assert.Zero(t, db.Stats().Tokens)

	// Past every tombstone's deadline (A's and X's: their idle hour from
	// their creation; Y's an hour after its own), a sweep deletes them
	// all: the file is empty again.
	clock.Set(famEpoch.Add(time.Hour + time.Minute))
	_, err = db.Sweep(ctx)
	require.NoError(t, err)
	for _, tok := range []string{a, x, y} {
		_, err = db.Validate(ctx, tok)
		require.ErrorIs(t, err, tokenstore.ErrNotFound)
	}
	requireClean(t, db)
	keys := bucketKeys(t, db)
	for _, name := range []string{"tombstones", "tombdue", "families"} {
		assert.Zero(t, keys[name], name)
	}
}

// A schema-2 file written before families (testdata/schema2.db: a copy
// of testdata/schema1.db opened and closed, with Now at schema1Now, by the
// build of commit be36651, which upgraded it) keeps working: a reader
// sees every token as its own family, a writer adds the buckets of
// families without rewriting a record, and rotation works on it.
func TestFamily_Schema2FileWithoutFamilies(t *testing.T) {
	ctx := t.Context()
	data, err := os.ReadFile(filepath.Join("testdata", "schema1.json"))
	require.NoError(t, err)
	var want []*schema1Token
	require.NoError(t, json.Unmarshal(data, &want))
	src, err := os.ReadFile(filepath.Join("testdata", "schema2.db"))
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "schema2.db")
	require.NoError(t, os.WriteFile(path, src, 0o600))

	records := func() map[string][]byte {
		b, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
		require.NoError(t, err)
		defer b.Close()
		out := map[string][]byte{}
		require.NoError(t, b.View(func(tx *bolt.Tx) error {
			for _, name := range []string{"tombstones", "tombdue", "families"} {
				if tx.Bucket([]byte(name)) != nil {
					out["bucket "+name] = nil
				}
			}
			return tx.Bucket([]byte("tokens")).ForEach(func(k, v []byte) error {
				out[string(k)] = bytes.Clone(v)
				return nil
			})
		}))
		return out
	}
	before := records()
	require.NotContains(t, before, "bucket families", "the fixture predates families")

	now := func() time.Time { return schema1Now }
	ro, err := tokenstore.Open(path, &tokenstore.Options{ReadOnly: true, Now: now})
	require.NoError(t, err)
	var live []*schema1Token
	for _, e := range want {
		info, err := ro.Lookup(ctx, e.Token)
		switch e.State {
		case "live":
			require.NoError(t, err, "token %s", e.ID)
			assert.Equal(t, info.ID, info.FamilyID, "token %s: its own family", e.ID)
			live = append(live, e)
		case "revoked":
			require.ErrorIs(t, err, tokenstore.ErrNotFound, "token %s", e.ID)
		}
	}
	require.NotEmpty(t, live)
	_, _, err = ro.Rotate(ctx, live[0].Token)
	require.ErrorIs(t, err, tokenstore.ErrReadOnly)
	problems, err := ro.Check(ctx)
	require.NoError(t, err)
	require.Empty(t, problems)
	require.NoError(t, ro.Close())

	db, err := tokenstore.Open(path, &tokenstore.Options{Now: now, SweepInterval: -1})
	require.NoError(t, err)
	requireClean(t, db)
	require.NoError(t, db.Close())
	after := records()
	for _, name := range []string{"tombstones", "tombdue", "families"} {
		require.Contains(t, after, "bucket "+name, "a writable Open adds it")
		delete(after, "bucket "+name)
	}
	assert.Equal(t, before, after, "no record was rewritten")

	db, err = tokenstore.Open(path, &tokenstore.Options{Now: now, SweepInterval: -1})
	require.NoError(t, err)
	defer func() { require.NoError(t, db.Close()) }()
	old := live[0]
	next, info, err := db.Rotate(ctx, old.Token)
	require.NoError(t, err)
	assert.Equal(t, old.ID, info.FamilyID.String())
	assert.LessOrEqual(t, info.ExpiresAt.UnixMilli(), old.Created+(24*time.Hour).Milliseconds(), "the cap counts from the old record's creation")
	_, err = db.Validate(ctx, old.Token)
	require.ErrorIs(t, err, tokenstore.ErrReused)
	_, err = db.Validate(ctx, next)
	require.ErrorIs(t, err, tokenstore.ErrNotFound)
	requireClean(t, db)
}

// The schema-1 upgrade path ends with the buckets of families too.
func TestFamily_Schema1Upgrade(t *testing.T) {
	path, want := loadSchema1(t)
	db, err := tokenstore.Open(path, &tokenstore.Options{Now: func() time.Time { return schema1Now }, SweepInterval: -1})
	require.NoError(t, err)
	defer func() { require.NoError(t, db.Close()) }()
	for _, e := range want {
		if e.State != "live" {
			continue
		}
		_, info, err := db.Rotate(t.Context(), e.Token, tokenstore.WithGrace(time.Minute))
		require.NoError(t, err)
		assert.Equal(t, e.ID, info.FamilyID.String())
		break
	}
	requireClean(t, db)
}

// 32 Rotates of one token within its grace, on a real file, racing
// through the group commit: one successor, issued once.
func TestFamily_ConcurrentRotateOneSuccessor(t *testing.T) {
	ctx := t.Context()
	clock := tokenstoretest.NewClockAt(famEpoch)
	db := mustOpen(t, famOptions(clock))
	a, _, err := db.Issue(ctx, "user")
	require.NoError(t, err)
	before := db.Stats()
	const n = 32
	tokens := make([]string, n)
	ids := make([]uuid.UUID, n)
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			var info tokenstore.Info
			tokens[i], info, errs[i] = db.Rotate(ctx, a, tokenstore.WithGrace(time.Minute))
			ids[i] = info.ID
		})
	}
	close(start)
	wg.Wait()
	for i := range n {
		require.NoError(t, errs[i], "Rotate %d", i)
		assert.Equal(t, tokens[0], tokens[i], "Rotate %d: the same successor", i)
		assert.Equal(t, ids[0], ids[i], "Rotate %d: the same successor's ID", i)
	}
	after := db.Stats()
	assert.Equal(t, before.Issued+1, after.Issued, "one successor issued")
	assert.Equal(t, before.Revoked+1, after.Revoked)
	assert.Equal(t, int64(1), after.Tokens)
	list, err := db.List(ctx, "user")
	require.NoError(t, err)
	require.Len(t, list, 1)
	assert.Equal(t, ids[0], list[0].ID)
	requireClean(t, db)
}

// 100 rotations never extend the family's cap, for either policy, and the
// file keeps one token and the tombstones that have not expired.
func TestFamily_Cap100Rotations(t *testing.T) {
	ctx := t.Context()
	for _, p := range []tokenstore.Policy{tokenstore.Sliding(time.Hour, 10*time.Hour), tokenstore.Absolute(24 * time.Hour)} {
		t.Run(p.String(), func(t *testing.T) {
			clock := tokenstoretest.NewClockAt(famEpoch)
			o := famOptions(clock)
			o.Policy = p
			db := mustOpen(t, o)
			tok, first, err := db.Issue(ctx, "user")
			require.NoError(t, err)
			capEnd := first.CreatedAt.Add(p.MaxLifetime())
			step := p.MaxLifetime() / 100 // 100 rotations reach the cap
			for i := range 100 {
				clock.Advance(step - time.Millisecond)
				next, info, err := db.Rotate(ctx, tok)
				if clock.Now().Before(capEnd) {
					require.NoError(t, err, "rotation %d", i)
				} else {
					require.ErrorIs(t, err, tokenstore.ErrExpired, "rotation %d", i)
					break
				}
				assert.Equal(t, first.ID, info.FamilyID, "rotation %d", i)
				assert.False(t, info.ExpiresAt.After(capEnd), "rotation %d: %s past the cap %s", i, info.ExpiresAt, capEnd)
				if !p.IsSliding() {
					assert.True(t, capEnd.Equal(info.ExpiresAt), "rotation %d: Absolute keeps the first token's", i)
				}
				tok = next
			}
			clock.Set(capEnd)
			_, err = db.Validate(ctx, tok)
			require.ErrorIs(t, err, tokenstore.ErrExpired, "at the cap")
			_, _, err = db.Rotate(ctx, tok)
			require.ErrorIs(t, err, tokenstore.ErrExpired, "no rotation past the cap")
			n, err := db.Sweep(ctx)
			require.NoError(t, err)
			assert.Equal(t, 1, n, "the one token")
			requireClean(t, db)
			keys := bucketKeys(t, db)
			assert.Zero(t, keys["tombstones"], "every tombstone swept: none outlives the cap")
			assert.Zero(t, keys["families"])
		})
	}
}

// A reuse is logged at Warn with the family and the count, never with a
// token or its hash; its error names neither.
func TestFamily_ReuseLog(t *testing.T) {
	ctx := t.Context()
	clock := tokenstoretest.NewClockAt(famEpoch)
	var logs logtest.Buffer
	o := famOptions(clock)
	o.Logger = slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	db := mustOpen(t, o)
	a, aInfo, err := db.Issue(ctx, "user")
	require.NoError(t, err)
	b, _, err := db.Rotate(ctx, a)
	require.NoError(t, err)
	c, _, err := db.Rotate(ctx, b)
	require.NoError(t, err)

	var errs []error
	_, err = db.Validate(ctx, a)
	errs = append(errs, err)
	_, err = db.Lookup(ctx, b)
	errs = append(errs, err)
	_, _, err = db.Rotate(ctx, a)
	errs = append(errs, err)
	secrets := []string{a, b, c}
	format, err := tokenstore.NewFormat(o.Prefix)
	require.NoError(t, err)
	for _, s := range []string{a, b, c} {
		h, err := format.Parse(s)
		require.NoError(t, err)
		secrets = append(secrets, hex.EncodeToString(h[:]), hex.EncodeToString(h[:6]), hex.EncodeToString(h[6:12]))
	}
	for i, err := range errs {
		require.ErrorIs(t, err, tokenstore.ErrReused, "call %d", i)
		assert.Equal(t, 1, strings.Count(err.Error(), "tokenstore:"), "one prefix: %q", err)
		for _, s := range secrets {
			assert.NotContains(t, err.Error(), s)
		}
	}

	text := logs.String()
	for _, s := range secrets {
		require.NotContains(t, text, s, "a token or its hash in the log")
	}
	warns := logtest.Records(t, text, "WARN")
	require.Len(t, warns, 1, "three reuses of one family within a minute: one line (TestFamily_ReuseLogRateLimited)")
	assert.Contains(t, warns[0]["msg"], "token reused after rotation; family revoked")
	assert.Equal(t, aInfo.ID.String(), warns[0]["family"])
	assert.Equal(t, 1.0, warns[0]["revoked"], "C")
	st := db.Stats()
	assert.Equal(t, uint64(3), st.RejectedReused)
}

// TestFamily_ReuseLogRateLimited: each replay of a rotated-away token
// logged a Warn line, so a stolen token replayed in a loop filled the
// logs. Within a minute of a family's line (on Options.Now), its later
// reuses are counted, not logged, and the first line after that minute
// carries the count; another family is logged apart; every reuse is still
// refused and counted in Stats. The conformance suite checks it of a
// writable store (Family/ReuseLogRateLimited); here, of a store reopened
// read-only, which revokes nothing.
func TestFamily_ReuseLogRateLimited(t *testing.T) {
	ctx := t.Context()
	clock := tokenstoretest.NewClockAt(famEpoch)
	path := filepath.Join(t.TempDir(), "tokens.db")
	var logs logtest.Buffer
	o := famOptions(clock)
	o.Logger = slog.New(slog.NewJSONHandler(&logs, nil))
	db := mustOpenAt(t, path, o)
	a, aInfo, err := db.Issue(ctx, "user")
	require.NoError(t, err)
	_, _, err = db.Rotate(ctx, a)
	require.NoError(t, err)
	x, xInfo, err := db.Issue(ctx, "other")
	require.NoError(t, err)
	_, _, err = db.Rotate(ctx, x)
	require.NoError(t, err)
	require.NoError(t, db.Close())
	o.ReadOnly = true
	db = mustOpenAt(t, path, o)
	warns := func() []map[string]any {
		t.Helper()
		return logtest.Records(t, logs.Take(), "WARN")
	}
	msg := "family not revoked: the store is read-only"

	const replays = 20
	for i := range replays {
		clock.Advance(time.Second)
		_, err := db.Validate(ctx, a)
		require.ErrorIs(t, err, tokenstore.ErrReused, "replay %d", i)
	}
	_, err = db.Validate(ctx, x)
	require.ErrorIs(t, err, tokenstore.ErrReused)
	got := warns()
	require.Len(t, got, 2, "%d replays of a family within a minute: one line; another family's: its own", replays)
	assert.Contains(t, got[0]["msg"], msg)
	assert.Equal(t, aInfo.FamilyID.String(), got[0]["family"])
	assert.NotContains(t, got[0], "suppressed")
	assert.Equal(t, xInfo.FamilyID.String(), got[1]["family"])
	assert.Equal(t, uint64(replays+1), db.Stats().RejectedReused, "every reuse counted")

	clock.Advance(time.Minute - time.Duration(replays-1)*time.Second) // a minute after a's line
	_, err = db.Lookup(ctx, a)
	require.ErrorIs(t, err, tokenstore.ErrReused)
	got = warns()
	require.Len(t, got, 1, "after the minute")
	assert.Contains(t, got[0]["msg"], msg)
	assert.Equal(t, float64(replays-1), got[0]["suppressed"], "the replays not logged")
	_, err = db.Validate(ctx, a)
	require.ErrorIs(t, err, tokenstore.ErrReused)
	assert.Empty(t, warns(), "a new minute")
}

// After RevokeFamily or a reuse returns, no token of the family
// validates, though each was answered from memory just before, and
// however Validates race with the revocation.
func TestFamily_CacheCoherent(t *testing.T) {
	ctx := t.Context()
	clock := tokenstoretest.NewClockAt(famEpoch)
	db := mustOpen(t, famOptions(clock))
	for round := range 20 {
		a, aInfo, err := db.Issue(ctx, "user")
		require.NoError(t, err)
		b, _, err := db.Rotate(ctx, a)
		require.NoError(t, err)
		for range 3 {
			_, err = db.Validate(ctx, b)
			require.NoError(t, err)
		}
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					_, _ = db.Validate(ctx, b)
				}
			})
		}
		if round%2 == 0 {
			_, err = db.RevokeFamily(ctx, aInfo.ID)
			require.NoError(t, err)
		} else {
			_, err = db.Validate(ctx, a)
			require.ErrorIs(t, err, tokenstore.ErrReused)
		}
		_, err = db.Validate(ctx, b)
		require.ErrorIs(t, err, tokenstore.ErrNotFound, "round %d: B after its family's revocation", round)
		close(stop)
		wg.Wait()
		_, err = db.Validate(ctx, b)
		require.ErrorIs(t, err, tokenstore.ErrNotFound, "round %d", round)
	}
}

// A read-only store answers a rotated-away token as a writer would: in
// its grace with its own Info, after it with ErrReused; it cannot revoke,
// so it says so in the log and leaves the file as it is.
func TestFamily_ReadOnly(t *testing.T) {
	ctx := t.Context()
	clock := tokenstoretest.NewClockAt(famEpoch)
	path := filepath.Join(t.TempDir(), "tokens.db")
	db, err := tokenstore.Open(path, famOptions(clock))
	require.NoError(t, err)
	a, aInfo, err := db.Issue(ctx, "user")
	require.NoError(t, err)
	b, _, err := db.Rotate(ctx, a, tokenstore.WithGrace(time.Minute))
	require.NoError(t, err)
	require.NoError(t, db.Close())

	o := famOptions(clock)
	o.ReadOnly = true
	ro, err := tokenstore.Open(path, o)
	require.NoError(t, err)
	defer func() { require.NoError(t, ro.Close()) }()
	got, err := ro.Validate(ctx, a)
	require.NoError(t, err)
	assert.Equal(t, aInfo.ID, got.ID)
	clock.Advance(time.Minute)
	_, err = ro.Validate(ctx, a)
	require.ErrorIs(t, err, tokenstore.ErrReused)
	_, err = ro.Lookup(ctx, b)
	require.NoError(t, err, "a read-only store revokes nothing")
	_, err = ro.RevokeFamily(ctx, aInfo.ID)
	require.ErrorIs(t, err, tokenstore.ErrReadOnly)
	assert.True(t, errors.Is(err, tokenstore.ErrReadOnly))
}

// A new family's chain is found by RevokeFamily through its head's ID
// (the head needs no families entry) after a reopen, and Check accepts
// every step.
func TestFamily_NewFamilyChain(t *testing.T) {
	ctx := t.Context()
	clock := tokenstoretest.NewClockAt(famEpoch)
	path := filepath.Join(t.TempDir(), "tokens.db")
	db, err := tokenstore.Open(path, famOptions(clock))
	require.NoError(t, err)
	a, aInfo, err := db.Issue(ctx, "user")
	require.NoError(t, err)
	b, bInfo, err := db.Rotate(ctx, a, tokenstore.WithNewFamily())
	require.NoError(t, err)
	require.Equal(t, bInfo.ID, bInfo.FamilyID)
	requireClean(t, db)
	n, err := db.RevokeFamily(ctx, aInfo.ID)
	require.NoError(t, err)
	assert.Zero(t, n, "A's old family holds no live token")
	_, err = db.Validate(ctx, b)
	require.NoError(t, err)
	clock.Advance(time.Minute)
	c, cInfo, err := db.Rotate(ctx, b)
	require.NoError(t, err)
	require.Equal(t, bInfo.ID, cInfo.FamilyID)
	requireClean(t, db)
	require.NoError(t, db.Close())

	db = mustOpenAt(t, path, famOptions(clock))
	n, err = db.RevokeFamily(ctx, bInfo.ID)
	require.NoError(t, err)
	assert.Equal(t, 1, n, "C")
	_, err = db.Validate(ctx, c)
	require.ErrorIs(t, err, tokenstore.ErrNotFound)
	for _, tok := range []string{a, b} {
		_, err = db.Validate(ctx, tok)
		require.ErrorIs(t, err, tokenstore.ErrReused)
	}
	requireClean(t, db)
}

// Revoke of a token in its grace (the conformance suite's
// Family/RevokeInGrace holds the answers) leaves nothing of it in the
// file: no tombstone, no tombstone due for a sweep, no families entry, in
// the old token's family and in a new one, and Check finds the file
// clean; after a Close and an Open the old token is still unknown.
func TestFamily_RevokeInGraceLeavesNothing(t *testing.T) {
	ctx := t.Context()
	clock := tokenstoretest.NewClockAt(famEpoch)
	path := filepath.Join(t.TempDir(), "tokens.db")
	db, err := tokenstore.Open(path, famOptions(clock))
	require.NoError(t, err)
	var old []string
	for _, opts := range [][]tokenstore.RotateOption{
		{tokenstore.WithGrace(time.Minute)},
		{tokenstore.WithGrace(time.Minute), tokenstore.WithNewFamily()},
	} {
		a, _, err := db.Issue(ctx, "user")
		require.NoError(t, err)
		_, _, err = db.Rotate(ctx, a, opts...)
		require.NoError(t, err)
		require.NoError(t, db.Revoke(ctx, a))
		old = append(old, a)
	}
	requireClean(t, db)
	keys := bucketKeys(t, db)
	for _, name := range []string{"tombstones", "tombdue", "families"} {
		assert.Zero(t, keys[name], name)
	}
	require.NoError(t, db.Close())

	db, err = tokenstore.Open(path, famOptions(clock))
	require.NoError(t, err)
	defer func() { require.NoError(t, db.Close()) }()
	for _, a := range old {
		_, err = db.Validate(ctx, a)
		require.ErrorIs(t, err, tokenstore.ErrNotFound, "after a reopen")
	}
	assert.Zero(t, db.Stats().Tokens)
}

// The file keeps times in milliseconds: a grace below one is rounded up
// to one, as is any fraction of one, where it was cut down to none
// (WithGrace(500*time.Microsecond) made the old token a reuse at once,
// revoking the family its caller had asked a grace for).
func TestFamily_SubMillisecondGrace(t *testing.T) {
	ctx := t.Context()
	p, err := tokenstore.NewRotateParams(tokenstore.WithGrace(500 * time.Microsecond))
	require.NoError(t, err)
	assert.Equal(t, time.Millisecond, p.Grace)
	p, err = tokenstore.NewRotateParams(tokenstore.WithGrace(tokenstore.MaxGrace - time.Nanosecond))
	require.NoError(t, err)
	assert.Equal(t, tokenstore.MaxGrace, p.Grace)

	clock := tokenstoretest.NewClockAt(famEpoch)
	db := mustOpen(t, famOptions(clock))
	a, _, err := db.Issue(ctx, "user")
	require.NoError(t, err)
	b, _, err := db.Rotate(ctx, a, tokenstore.WithGrace(500*time.Microsecond))
	require.NoError(t, err)
	_, err = db.Validate(ctx, a)
	require.NoError(t, err, "within the grace")
	clock.Advance(time.Millisecond)
	_, err = db.Validate(ctx, a)
	require.ErrorIs(t, err, tokenstore.ErrReused, "after it")
	_, err = db.Validate(ctx, b)
	require.ErrorIs(t, err, tokenstore.ErrNotFound)
}

// A Validate of the successor in the very millisecond of the rotation
// ends the old token's grace for good, as a later one does: it reaches
// the file, so that a Close and an Open do not reopen the grace. The
// file keeps a use as a last use later than the creation, so that first
// use is counted 1 ms after the creation (where it was not written at
// all, and the old token validated again after the restart). The same
// holds while the clock reads earlier than the rotation.
func TestFamily_SuccessorUsedInItsFirstMillisecond(t *testing.T) {
	ctx := t.Context()
	for _, back := range []time.Duration{0, time.Minute} {
		clock := tokenstoretest.NewClockAt(famEpoch)
		path := filepath.Join(t.TempDir(), "tokens.db")
		db, err := tokenstore.Open(path, famOptions(clock))
		require.NoError(t, err)
		a, _, err := db.Issue(ctx, "user")
		require.NoError(t, err)
		clock.Advance(time.Second)
		b, bInfo, err := db.Rotate(ctx, a, tokenstore.WithGrace(5*time.Minute))
		require.NoError(t, err)
		clock.Set(clock.Now().Add(-back))
		got, err := db.Validate(ctx, b)
		require.NoError(t, err)
		assert.Equal(t, bInfo.CreatedAt.Add(time.Millisecond), got.LastUsedAt, "back %s", back)
		require.NoError(t, db.Close())

		db, err = tokenstore.Open(path, famOptions(clock))
		require.NoError(t, err)
		clock.Set(bInfo.CreatedAt.Add(time.Second))
		_, err = db.Validate(ctx, a)
		require.ErrorIs(t, err, tokenstore.ErrReused, "back %s: the successor's use was kept", back)
		require.NoError(t, db.Close())
	}
}
