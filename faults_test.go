package tokenstore_test

// Tests of issue 12's fault kinds that are the bbolt store's own (the
// ones every backend shares are in tokenstoretest).

import (
	"bytes"
	"context"
	"fmt"
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
	bolt "go.etcd.io/bbolt"

	"github.com/tokenstore/tokenstore"
	"github.com/tokenstore/tokenstore/tokenstoretest"
)

// TestOpen_RefusesInexactPolicy: Options.Policy is checked like a
// per-token one, before the file is touched.
func TestOpen_RefusesInexactPolicy(t *testing.T) {
	for _, p := range []tokenstore.Policy{
		tokenstore.Sliding(time.Hour, 500*time.Microsecond),
		tokenstore.Sliding(2*time.Hour, time.Hour),
		tokenstore.Absolute(time.Duration(30)),
	} {
		path := filepath.Join(t.TempDir(), "tokens.db")
		_, err := tokenstore.Open(path, &tokenstore.Options{Policy: p})
		require.ErrorIs(t, err, tokenstore.ErrInvalidPolicy, "%s", p)
		require.Contains(t, err.Error(), "Options.Policy")
		_, err = os.Stat(path)
		require.ErrorIs(t, err, os.ErrNotExist, "no file created")
	}
}

// hangLimit is how long a call may take before a test calls it hung. It is
// a detector for a deadlock, not a performance bar: every call here takes
// milliseconds when it works.
const hangLimit = 30 * time.Second

// within runs fn and fails the test if it has not returned after
// hangLimit. A hung fn is left running: the test has failed anyway.
func within(t *testing.T, what string, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	select {
	case <-done:
	case <-time.After(hangLimit):
		t.Fatalf("%s did not return within %s: the store is wedged", what, hangLimit)
	}
}

// bigMeta is metadata near the largest a token may carry, so that a few
// hundred issues make bbolt grow (and re-map) the file.
var bigMeta = map[string]string{"blob": strings.Repeat("m", tokenstore.MaxMetadataSize-16)}

// TestForEach_CallbackMayWrite: the reported case (5 tokens, revoke each
// from ForEach's callback: the fourth RevokeID never returned) and its
// neighbours: more tokens, metadata, callbacks that issue (the file must
// grow while ForEach runs) or sweep.
func TestForEach_CallbackMayWrite(t *testing.T) {
	cases := []struct {
		name   string
		n      int
		meta   map[string]string
		action string
	}{
		{"5 revoke", 5, nil, "revoke"},
		{"10 with metadata revoke", 10, map[string]string{"scope": "read write"}, "revoke"},
		{"100 big metadata revoke", 100, bigMeta, "revoke"},
		{"20 issue two each", 20, nil, "issue"},
		{"50 sweep and rotate", 50, bigMeta, "rotate"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			db := mustOpen(t, &tokenstore.Options{SweepInterval: -1})
			tokens := map[uuid.UUID]string{}
			for range tc.n {
				token, info, err := db.Issue(ctx, "user", tokenstore.WithMetadata(tc.meta))
				require.NoError(t, err)
				tokens[info.ID] = token
			}
			before := fileSize(t, db.Path())
			seen := map[uuid.UUID]int{}
			within(t, "ForEach", func() {
				require.NoError(t, db.ForEach(ctx, func(in tokenstore.Info) error {
					seen[in.ID]++
					switch tc.action {
					case "revoke":
						return db.RevokeID(ctx, in.ID)
					case "issue": // the file grows; new tokens may be seen too
						if _, ok := tokens[in.ID]; !ok {
							return nil
						}
						for range 2 {
							if _, _, err := db.Issue(ctx, "other", tokenstore.WithMetadata(bigMeta)); err != nil {
								return err
							}
						}
					case "rotate":
						if _, err := db.Sweep(ctx); err != nil {
							return err
						}
						if token, ok := tokens[in.ID]; ok {
							if _, _, err := db.Rotate(ctx, token); err != nil {
								return err
							}
						}
					}
					return nil
				}))
			})
			for id := range tokens {
				require.Equal(t, 1, seen[id], "token %s: every token there from start to end is seen once", id)
			}
			switch tc.action {
			case "revoke":
				require.Zero(t, db.Stats().Tokens)
			case "issue":
				require.Greater(t, fileSize(t, db.Path()), before, "the file grew while ForEach ran")
			}
			within(t, "Issue after", func() {
				_, _, err := db.Issue(ctx, "user")
				require.NoError(t, err)
			})
		})
	}
}

// TestForEach_SlowCallbackStallsNothing: while ForEach's callback is
// stuck, every other call goes on, the file grows, and Close returns;
// ForEach then ends with ErrClosed.
func TestForEach_SlowCallbackStallsNothing(t *testing.T) {
	ctx := t.Context()
	db, err := tokenstore.Open(filepath.Join(t.TempDir(), "tokens.db"), &tokenstore.Options{SweepInterval: -1})
	require.NoError(t, err)
	var tokens []string
	for range 300 {
		token, _, err := db.Issue(ctx, "user")
		require.NoError(t, err)
		tokens = append(tokens, token)
	}
	inside, release := make(chan struct{}), make(chan struct{})
	result := make(chan error, 1)
	go func() {
		first := true
		result <- db.ForEach(ctx, func(tokenstore.Info) error {
			if first {
				first = false
				close(inside)
				<-release
			}
			return nil
		})
	}()
	<-inside
	before := fileSize(t, db.Path())
	within(t, "writes while a ForEach callback is stuck", func() {
		for range 600 {
			_, _, err := db.Issue(ctx, "other", tokenstore.WithMetadata(bigMeta))
			require.NoError(t, err)
		}
		_, err := db.Validate(ctx, tokens[len(tokens)-1])
		require.NoError(t, err)
		require.NoError(t, db.Revoke(ctx, tokens[0]))
		_, err = db.Sweep(ctx)
		require.NoError(t, err)
	})
	require.Greater(t, fileSize(t, db.Path()), before, "the file grew")
	within(t, "Close", func() { require.NoError(t, db.Close()) })
	close(release)
	require.ErrorIs(t, <-result, tokenstore.ErrClosed)
}

// stuckWriter blocks its first Write until released.
type stuckWriter struct {
	inside, release chan struct{}
	once            sync.Once
	buf             bytes.Buffer
}

func (w *stuckWriter) Write(p []byte) (int, error) {
	w.once.Do(func() {
		close(w.inside)
		<-w.release
	})
	return w.buf.Write(p)
}

// TestBackup_SlowWriterStallsNothing: a backup streamed to a consumer
// that does not read stalls no other call, even when the file must grow;
// the copy is the file as it was when Backup began.
func TestBackup_SlowWriterStallsNothing(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	db := mustOpenAt(t, filepath.Join(dir, "tokens.db"), &tokenstore.Options{SweepInterval: -1})
	for range 100 {
		_, _, err := db.Issue(ctx, "user")
		require.NoError(t, err)
	}
	w := &stuckWriter{inside: make(chan struct{}), release: make(chan struct{})}
	result := make(chan error, 1)
	go func() {
		_, err := db.Backup(ctx, w)
		result <- err
	}()
	<-w.inside
	before := fileSize(t, db.Path())
	within(t, "Issue while a backup's writer is stuck", func() {
		for range 600 {
			_, _, err := db.Issue(ctx, "other", tokenstore.WithMetadata(bigMeta))
			require.NoError(t, err)
		}
	})
	require.Greater(t, fileSize(t, db.Path()), before, "the file grew")
	close(w.release)
	require.NoError(t, <-result)

	copyPath := filepath.Join(t.TempDir(), "backup.db")
	require.NoError(t, os.WriteFile(copyPath, w.buf.Bytes(), 0o600))
	cp := mustOpenAt(t, copyPath, &tokenstore.Options{ReadOnly: true})
	assert.EqualValues(t, 100, cp.Stats().Tokens, "the file as it was when Backup began")
	problems, err := cp.Check(ctx)
	require.NoError(t, err)
	require.Empty(t, problems)
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, entries, 1, "no temporary file left beside the store: %v", entries)
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	st, err := os.Stat(path)
	require.NoError(t, err)
	return st.Size()
}

// damageRecords flips one bit in the records of ids, in the closed file
// at path, through bbolt, so that the file itself stays valid.
func damageRecords(t *testing.T, path string, ids ...uuid.UUID) {
	t.Helper()
	updateBolt(t, path, func(tx *bolt.Tx) error {
		for _, id := range ids {
			v := tx.Bucket([]byte("ids")).Get(id[:])
			require.NotNil(t, v, "id %s", id)
			// Schema 2: the ids entry starts with the first half of the
			// record's key.
			tokens := tx.Bucket([]byte("tokens"))
			h, r := tokens.Cursor().Seek(v[:16])
			require.True(t, h != nil && bytes.HasPrefix(h, v[:16]), "id %s: no record", id)
			rec := bytes.Clone(r)
			rec[len(rec)/2] ^= 0x10
			if err := tokens.Put(bytes.Clone(h), rec); err != nil {
				return err
			}
		}
		return nil
	})
}

// issueMany issues n tokens of subject under p in one transaction.
func issueMany(t *testing.T, db *tokenstore.DB, n int, subject string, p tokenstore.Policy) []tokenstore.Issued {
	t.Helper()
	reqs := make([]tokenstore.IssueRequest, n)
	for i := range reqs {
		reqs[i] = tokenstore.IssueRequest{Subject: subject, Policy: p}
	}
	out, err := db.IssueBatch(t.Context(), reqs)
	require.NoError(t, err)
	return out
}

// logCounter counts the log records at or above Error.
type logCounter struct {
	mu     sync.Mutex
	errors []string
}

func (l *logCounter) Enabled(_ context.Context, lv slog.Level) bool { return true }
func (l *logCounter) Handle(_ context.Context, r slog.Record) error {
	if r.Level >= slog.LevelError {
		l.mu.Lock()
		defer l.mu.Unlock()
		msg := r.Message
		r.Attrs(func(a slog.Attr) bool { msg += " " + a.String(); return true })
		l.errors = append(l.errors, msg)
	}
	return nil
}
func (l *logCounter) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logCounter) WithGroup(string) slog.Handler      { return l }
func (l *logCounter) count() int                         { l.mu.Lock(); defer l.mu.Unlock(); return len(l.errors) }

// TestSweep_DamagedRecordCostsOnlyItself: the reported case (1,000
// expired tokens, one flipped bit, five sweeps: each failed at the same
// record, 400-450 tokens were never deleted, the sweeper logged every
// interval) and its neighbours: damage at the first record, many damaged
// records (more than a sweep transaction takes), damage at the last.
func TestSweep_DamagedRecordCostsOnlyItself(t *testing.T) {
	cases := []struct {
		name    string
		damaged []int // indexes, in issue order, of the damaged records
	}{
		{"one in the middle", []int{500}},
		{"the first", []int{0}},
		{"the last", []int{999}},
		{"300 spread", func() (s []int) {
			for i := range 300 {
				s = append(s, i*3+1)
			}
			return s
		}()},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clock := tokenstoretest.NewClock()
			path := filepath.Join(t.TempDir(), "tokens.db")
			db, err := tokenstore.Open(path, noWrites(clock))
			require.NoError(t, err)
			issued := issueMany(t, db, 1000, "user", tokenstore.Absolute(time.Hour))
			require.NoError(t, db.Close())
			var ids []uuid.UUID
			for _, i := range tc.damaged {
				ids = append(ids, issued[i].Info.ID)
			}
			damageRecords(t, path, ids...)

			clock.Advance(2 * time.Hour)
			logs := &logCounter{}
			o := noWrites(clock)
			o.Logger = slog.New(logs)
			db = mustOpenAt(t, path, o)
			ctx := t.Context()
			n, err := db.Sweep(ctx)
			require.ErrorIs(t, err, tokenstore.ErrCorrupt)
			if len(ids) <= 100 {
				for _, id := range ids {
					require.Contains(t, err.Error(), id.String(), "the damaged record is named")
				}
			} else {
				require.Contains(t, err.Error(), fmt.Sprintf("%d damaged records (run check, %d more not named here)", len(ids), len(ids)-100))
				require.Equal(t, 100, strings.Count(err.Error(), "damaged record "), "100 named")
			}
			require.Equal(t, 1000-len(ids), n, "every other expired token deleted")
			for i := range 4 {
				n, err := db.Sweep(ctx)
				require.NoError(t, err, "sweep %d: reported once", i+2)
				require.Zero(t, n)
			}
			require.Equal(t, 1, logs.count(), "logged once in five sweeps: %q", logs.errors)
			require.EqualValues(t, len(ids), db.Stats().Tokens)

			problems, err := db.Check(ctx)
			require.NoError(t, err)
			require.Len(t, problems, len(ids), "check names each damaged record, and nothing else")
			all := strings.Join(problems, "\n")
			for _, id := range ids {
				require.Contains(t, all, id.String())
			}
			for _, i := range tc.damaged[:1] {
				_, err := db.Validate(ctx, issued[i].Token)
				require.ErrorIs(t, err, tokenstore.ErrCorrupt, "never treated as valid")
			}
		})
	}
}

// TestDamagedRecord_EveryPass: one damaged record among a subject's live
// tokens costs every pass over them only itself: List, ForEach,
// RevokeSubject, Backup, Compact, Check.
func TestDamagedRecord_EveryPass(t *testing.T) {
	clock := tokenstoretest.NewClock()
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "tokens.db")
	db, err := tokenstore.Open(path, noWrites(clock))
	require.NoError(t, err)
	issued := issueMany(t, db, 10, "user", tokenstore.Absolute(time.Hour))
	issueMany(t, db, 5, "other", tokenstore.Absolute(time.Hour))
	require.NoError(t, db.Close())
	bad := issued[4]
	damageRecords(t, path, bad.Info.ID)
	named := func(err error, what string) {
		t.Helper()
		require.ErrorIs(t, err, tokenstore.ErrCorrupt, what)
		require.Contains(t, err.Error(), bad.Info.ID.String(), what+": names the damaged record")
		require.Equal(t, 1, strings.Count(err.Error(), bad.Info.ID.String()), what+": once")
	}
	checkNames := func(db *tokenstore.DB, what string) {
		t.Helper()
		problems, err := db.Check(ctx)
		require.NoError(t, err)
		require.Len(t, problems, 1, what)
		require.Contains(t, problems[0], bad.Info.ID.String(), what)
	}

	db = mustOpenAt(t, path, noWrites(clock))
	list, err := db.List(ctx, "user")
	named(err, "List")
	require.Len(t, list, 9, "List: every other token")

	var seen []uuid.UUID
	err = db.ForEach(ctx, func(in tokenstore.Info) error { seen = append(seen, in.ID); return nil })
	named(err, "ForEach")
	require.Len(t, seen, 14, "ForEach: every other token")
	require.NotContains(t, seen, bad.Info.ID)

	var buf bytes.Buffer
	_, err = db.Backup(ctx, &buf)
	require.NoError(t, err, "Backup copies the file as it is")
	backup := filepath.Join(t.TempDir(), "backup.db")
	require.NoError(t, os.WriteFile(backup, buf.Bytes(), 0o600))
	checkNames(mustOpenAt(t, backup, &tokenstore.Options{ReadOnly: true}), "Check of the backup")

	n, err := db.RevokeSubject(ctx, "user")
	named(err, "RevokeSubject")
	require.Equal(t, 9, n, "RevokeSubject: every other token")
	for _, is := range issued {
		_, err := db.Validate(ctx, is.Token)
		if is.Info.ID == bad.Info.ID {
			require.ErrorIs(t, err, tokenstore.ErrCorrupt, "never treated as valid")
		} else {
			require.ErrorIs(t, err, tokenstore.ErrNotFound)
		}
	}
	list, err = db.List(ctx, "other")
	require.NoError(t, err, "another subject's list does not meet it")
	require.Len(t, list, 5)
	checkNames(db, "Check")
	require.NoError(t, db.Close())

	_, _, err = tokenstore.Compact(path, nil)
	require.NoError(t, err, "Compact copies the damaged record as it is")
	ro := mustOpenAt(t, path, &tokenstore.Options{ReadOnly: true})
	checkNames(ro, "Check after Compact")
	require.NoError(t, ro.Close())

	// The operator's repair: revoke what Check names.
	db = mustOpenAt(t, path, noWrites(clock))
	require.NoError(t, db.RevokeID(ctx, bad.Info.ID), "RevokeID removes a damaged record")
	problems, err := db.Check(ctx)
	require.NoError(t, err)
	require.Empty(t, problems, "nothing of it is left in any index")
	require.EqualValues(t, 5, db.Stats().Tokens)
	_, err = db.Validate(ctx, bad.Token)
	require.ErrorIs(t, err, tokenstore.ErrNotFound)
}

// TestRevoke_DamagedRecord: Revoke by token removes a damaged record too.
func TestRevoke_DamagedRecord(t *testing.T) {
	clock := tokenstoretest.NewClock()
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "tokens.db")
	db, err := tokenstore.Open(path, noWrites(clock))
	require.NoError(t, err)
	issued := issueMany(t, db, 3, "user", tokenstore.Absolute(time.Hour))
	require.NoError(t, db.Close())
	damageRecords(t, path, issued[1].Info.ID)
	db = mustOpenAt(t, path, noWrites(clock))
	require.NoError(t, db.Revoke(ctx, issued[1].Token))
	require.ErrorIs(t, db.Revoke(ctx, issued[1].Token), tokenstore.ErrNotFound)
	problems, err := db.Check(ctx)
	require.NoError(t, err)
	require.Empty(t, problems)
	list, err := db.List(ctx, "user")
	require.NoError(t, err)
	require.Len(t, list, 2)
}

// TestOpen_Prefix: the file records its token prefix; a store of another
// prefix is refused, an empty Options.Prefix takes the file's, and a file
// that records none adopts the prefix of its first writable Open.
func TestOpen_Prefix(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "tokens.db")
	db, err := tokenstore.Open(path, &tokenstore.Options{Prefix: "myapp", SweepInterval: -1})
	require.NoError(t, err)
	token, _, err := db.Issue(ctx, "user")
	require.NoError(t, err)
	require.NoError(t, db.Close())

	for _, ro := range []bool{false, true} {
		_, err = tokenstore.Open(path, &tokenstore.Options{Prefix: "tks", ReadOnly: ro})
		require.ErrorIs(t, err, tokenstore.ErrPrefixMismatch)
		require.Contains(t, err.Error(), `the file's tokens start with "myapp_", Options.Prefix is "tks"`)
		var pm *tokenstore.PrefixMismatchError
		require.ErrorAs(t, err, &pm)
		require.Equal(t, tokenstore.PrefixMismatchError{Recorded: "myapp", Given: "tks"}, *pm)
		require.Equal(t, 1, strings.Count(err.Error(), "tokenstore: "), err.Error())

		db = mustOpenAt(t, path, &tokenstore.Options{ReadOnly: ro, SweepInterval: -1})
		require.Equal(t, "myapp", db.Prefix(), "empty Options.Prefix: the file's")
		_, err = db.Lookup(ctx, token)
		require.NoError(t, err)
		require.NoError(t, db.Close())
	}

	// A file from before the prefix was recorded.
	updateBolt(t, path, func(tx *bolt.Tx) error { return tx.Bucket([]byte("meta")).Delete([]byte("prefix")) })
	db = mustOpenAt(t, path, &tokenstore.Options{Prefix: "other", ReadOnly: true})
	require.Equal(t, "other", db.Prefix(), "a read-only Open records nothing")
	require.NoError(t, db.Close())
	db = mustOpenAt(t, path, &tokenstore.Options{Prefix: "myapp", SweepInterval: -1})
	require.NoError(t, db.Close())
	_, err = tokenstore.Open(path, &tokenstore.Options{Prefix: "other"})
	require.ErrorIs(t, err, tokenstore.ErrPrefixMismatch, "adopted on the first writable Open")

	// A new file without a prefix records the default.
	db = mustOpen(t, &tokenstore.Options{SweepInterval: -1})
	require.Equal(t, tokenstore.DefaultPrefix, db.Prefix())
	p := db.Path()
	require.NoError(t, db.Close())
	_, err = tokenstore.Open(p, &tokenstore.Options{Prefix: "myapp"})
	require.ErrorIs(t, err, tokenstore.ErrPrefixMismatch)
}

// cancelOnWrite cancels its context at the first write, and fails it.
type cancelOnWrite struct{ cancel context.CancelFunc }

func (c cancelOnWrite) Write([]byte) (int, error) {
	c.cancel()
	return 0, context.Canceled
}

// TestBackup_CanceledIsCanceled: a Backup stopped by its context returns
// an error that errors.Is context.Canceled on either path. On a ReadOnly
// store bbolt's WriteTo turned it into text ("meta 1 copy: context
// canceled"), so the CLI printed that rather than "interrupted".
func TestBackup_CanceledIsCanceled(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens.db")
	db := mustOpenAt(t, path, &tokenstore.Options{SweepInterval: -1})
	_, _, err := db.Issue(t.Context(), "user")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	_, err = db.Backup(ctx, cancelOnWrite{cancel})
	require.ErrorIs(t, err, context.Canceled, "read-write store")
	require.NoError(t, db.Close())

	ro := mustOpenAt(t, path, &tokenstore.Options{ReadOnly: true})
	ctx, cancel = context.WithCancel(t.Context())
	_, err = ro.Backup(ctx, cancelOnWrite{cancel})
	require.ErrorIs(t, err, context.Canceled, "read-only store")
}

// panicOnce is a logCounter whose Handle panics the first time it meets
// the record msg: a user's Logger may panic, and the caller recover.
type panicOnce struct {
	logCounter
	msg      string
	panicked bool
}

func (p *panicOnce) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == p.msg && !p.panicked {
		p.panicked = true
		panic("logger: " + p.msg)
	}
	return p.logCounter.Handle(ctx, r)
}
func (p *panicOnce) WithAttrs([]slog.Attr) slog.Handler { return p }
func (p *panicOnce) WithGroup(string) slog.Handler      { return p }

// TestSweep_DamageReportedAfterPanic: a sweep that found a damaged record
// and then panicked in its passes (the user's Logger, on a transaction's
// line) reported nothing, yet the record was recorded as reported
// (db.damaged): every later sweep stepped over it in silence, and the
// damage was never returned nor logged. The next sweep reports it, once.
func TestSweep_DamageReportedAfterPanic(t *testing.T) {
	clock := tokenstoretest.NewClock()
	path := filepath.Join(t.TempDir(), "tokens.db")
	db, err := tokenstore.Open(path, noWrites(clock))
	require.NoError(t, err)
	issued := issueMany(t, db, 10, "user", tokenstore.Absolute(time.Hour))
	require.NoError(t, db.Close())
	bad := issued[4].Info.ID
	damageRecords(t, path, bad)

	clock.Advance(2 * time.Hour)
	logs := &panicOnce{msg: "tokenstore: sweep transaction"}
	o := noWrites(clock)
	o.Logger = slog.New(logs)
	db = mustOpenAt(t, path, o)
	ctx := t.Context()
	func() {
		defer func() { require.NotNil(t, recover(), "the logger panicked") }()
		_, _ = db.Sweep(ctx)
	}()
	n, err := db.Sweep(ctx)
	require.ErrorIs(t, err, tokenstore.ErrCorrupt, "the damage found before the panic is reported")
	require.Contains(t, err.Error(), bad.String(), "the damaged record is named")
	require.Equal(t, 9, n, "every other expired token deleted")
	n, err = db.Sweep(ctx)
	require.NoError(t, err, "reported once")
	require.Zero(t, n)
	require.Equal(t, 1, logs.count(), "logged once: %q", logs.errors)
}
