package tokenstore_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"github.com/tokenstore/tokenstore"
)

// The schema-1 fixture: testdata/schema1.db was written by the schema-1
// code (commit "testdata: a schema-1 file for the upgrade test"), and
// testdata/schema1.json says what it holds, read back by that code. The
// tokens are test data: they open nothing.

// schema1Now is the fixture's clock when it was closed: some tokens are
// live then, some expired (not swept), some revoked.
var (
	schema1Epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	schema1Now   = schema1Epoch.Add(2*time.Hour + 15*time.Minute)
)

type schema1Token struct {
	Token    string            `json:"token"`
	ID       string            `json:"id"`
	Subject  string            `json:"subject"`
	Policy   string            `json:"policy"`
	Created  int64             `json:"created_ms"`
	LastUsed int64             `json:"last_used_ms"`
	Expires  int64             `json:"expires_ms"`
	Metadata map[string]string `json:"metadata,omitempty"`
	State    string            `json:"state"` // live, expired, revoked
}

// TestWriteSchema1Fixture wrote the fixture with the schema-1 code. It
// runs only with TOKENSTORE_WRITE_SCHEMA1=1, and only means something at
// the commit that added it.
func TestWriteSchema1Fixture(t *testing.T) {
	if os.Getenv("TOKENSTORE_WRITE_SCHEMA1") != "1" {
		t.Skip("writes testdata/schema1.*; set TOKENSTORE_WRITE_SCHEMA1=1 at the schema-1 commit")
	}
	ctx := context.Background()
	path := filepath.Join("testdata", "schema1.db")
	_ = os.Remove(path)
	clk := newManualClock(schema1Epoch)
	db, err := tokenstore.Open(path, &tokenstore.Options{SweepInterval: -1, Now: clk.Now, TouchInterval: time.Minute})
	require.NoError(t, err)
	policies := []tokenstore.Policy{
		tokenstore.Sliding(2*time.Hour, 24*time.Hour),
		tokenstore.Absolute(2 * time.Hour),
		{}, // the default: Sliding(14 days, 30 days)
		tokenstore.Sliding(90*time.Minute, 0),
	}
	var all []*schema1Token
	for i := range 300 {
		clk.Advance(10 * time.Second)
		subject := fmt.Sprintf("user-%02d", i%12)
		p := policies[i%len(policies)]
		var meta map[string]string
		if i%3 == 0 {
			meta = map[string]string{"device": fmt.Sprintf("d-%d", i), "ip": fmt.Sprintf("10.0.%d.%d", i/256, i%256)}
		}
		var tok string
		var info tokenstore.Info
		if i%5 == 4 { // some by the batch path
			out, err := db.IssueBatch(ctx, []tokenstore.IssueRequest{{Subject: subject, Policy: p, Metadata: meta}})
			require.NoError(t, err)
			tok, info = out[0].Token, out[0].Info
		} else {
			tok, info, err = db.Issue(ctx, subject, tokenstore.WithPolicy(p), tokenstore.WithMetadata(meta))
			require.NoError(t, err)
		}
		all = append(all, &schema1Token{Token: tok, ID: info.ID.String()})
	}
	// Uses: every fourth token an hour in, every eighth again at 2h.
	clk.Set(schema1Epoch.Add(time.Hour))
	for i := 0; i < len(all); i += 4 {
		_, err := db.Validate(ctx, all[i].Token)
		require.NoError(t, err)
	}
	clk.Set(schema1Epoch.Add(2 * time.Hour))
	for i := 0; i < len(all); i += 8 {
		_, _ = db.Validate(ctx, all[i].Token) // absolute ones issued first have expired
	}
	// Revocations: every seventh token, and all of user-11.
	for i := 6; i < len(all); i += 7 {
		require.NoError(t, db.Revoke(ctx, all[i].Token))
	}
	_, err = db.RevokeSubject(ctx, "user-11")
	require.NoError(t, err)
	clk.Set(schema1Now)
	require.NoError(t, db.Close())

	// What the schema-1 code reads back.
	db, err = tokenstore.Open(path, &tokenstore.Options{ReadOnly: true, Now: func() time.Time { return schema1Now }})
	require.NoError(t, err)
	defer db.Close()
	counts := map[string]int{}
	for _, e := range all {
		_, err := db.Lookup(ctx, e.Token)
		switch {
		case err == nil:
			e.State = "live"
		case errors.Is(err, tokenstore.ErrExpired):
			e.State = "expired"
		case errors.Is(err, tokenstore.ErrNotFound):
			e.State = "revoked"
		default:
			t.Fatal(err)
		}
		counts[e.State]++
		if e.State == "revoked" {
			continue
		}
		info, err := db.Get(ctx, uuid.MustParse(e.ID))
		if e.State == "live" {
			require.NoError(t, err)
		} else {
			require.ErrorIs(t, err, tokenstore.ErrExpired)
		}
		e.fill(info)
	}
	data, err := json.MarshalIndent(all, "", "  ")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join("testdata", "schema1.json"), append(data, '\n'), 0o644))
	t.Logf("%d tokens: %v", len(all), counts)
}

func (e *schema1Token) fill(info tokenstore.Info) {
	e.ID = info.ID.String()
	e.Subject = info.Subject
	e.Policy = info.Policy.String()
	e.Created = info.CreatedAt.UnixMilli()
	e.LastUsed = info.LastUsedAt.UnixMilli()
	e.Expires = info.ExpiresAt.UnixMilli()
	e.Metadata = info.Metadata
}

func loadSchema1(t *testing.T) (path string, want []*schema1Token) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "schema1.json"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(data, &want))
	require.Len(t, want, 300)
	src, err := os.ReadFile(filepath.Join("testdata", "schema1.db"))
	require.NoError(t, err)
	path = filepath.Join(t.TempDir(), "schema1.db")
	require.NoError(t, os.WriteFile(path, src, 0o600))
	return path, want
}

// logCount counts the log records whose message contains a string.
type logCount struct {
	sub string
	n   int
}

func (l *logCount) Enabled(context.Context, slog.Level) bool { return true }
func (l *logCount) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *logCount) WithGroup(string) slog.Handler            { return l }
func (l *logCount) Handle(_ context.Context, r slog.Record) error {
	if strings.Contains(r.Message, l.sub) {
		l.n++
	}
	return nil
}

// A file written by the schema-1 code is upgraded by the first Open, once:
// every token answers as the schema-1 code answered, every index agrees,
// and Check finds nothing.
func TestOpen_UpgradesSchema1(t *testing.T) {
	path, want := loadSchema1(t)
	ctx := t.Context()
	before, err := os.ReadFile(path)
	require.NoError(t, err)

	_, err = tokenstore.Open(path, &tokenstore.Options{ReadOnly: true})
	require.ErrorIs(t, err, tokenstore.ErrReadOnly, "a reader cannot upgrade")
	assert.Contains(t, err.Error(), "schema 1")
	after, err := os.ReadFile(path)
	require.NoError(t, err)
	require.True(t, bytes.Equal(before, after), "the refused file is unchanged")

	logs := &logCount{sub: "upgraded the file"}
	opts := func() *tokenstore.Options {
		return &tokenstore.Options{Now: func() time.Time { return schema1Now }, SweepInterval: -1, TouchInterval: time.Hour, Logger: slog.New(logs)}
	}
	for open := range 2 {
		db, err := tokenstore.Open(path, opts())
		require.NoError(t, err)
		assert.Equal(t, 1, logs.n, "open %d: upgraded on the first Open only", open)
		problems, err := db.Check(ctx)
		require.NoError(t, err)
		require.Empty(t, problems)

		stored, bySubject := 0, map[string][]string{}
		var ids []string
		for _, e := range want {
			id := uuid.MustParse(e.ID)
			info, lerr := db.Lookup(ctx, e.Token)
			ginfo, gerr := db.Get(ctx, id)
			switch e.State {
			case "revoked":
				require.ErrorIs(t, lerr, tokenstore.ErrNotFound, "token %s", e.ID)
				require.ErrorIs(t, gerr, tokenstore.ErrNotFound, "token %s", e.ID)
				continue
			case "live":
				require.NoError(t, lerr, "token %s", e.ID)
				require.NoError(t, gerr, "token %s", e.ID)
				assert.Equal(t, info, ginfo)
				bySubject[e.Subject] = append(bySubject[e.Subject], e.ID)
			case "expired":
				require.ErrorIs(t, lerr, tokenstore.ErrExpired, "token %s", e.ID)
				require.ErrorIs(t, gerr, tokenstore.ErrExpired, "token %s", e.ID)
			}
			stored++
			ids = append(ids, e.ID)
			got := &schema1Token{Token: e.Token, State: e.State}
			got.fill(ginfo)
			if len(got.Metadata) == 0 {
				got.Metadata = nil
			}
			assert.Equal(t, e, got, "token %s", e.ID)
		}
		assert.Equal(t, int64(stored), db.Stats().Tokens)
		for subject, wantIDs := range bySubject {
			list, err := db.List(ctx, subject)
			require.NoError(t, err)
			var got []string
			for _, info := range list {
				got = append(got, info.ID.String())
			}
			slices.Sort(wantIDs) // UUIDv7: id order is issue order
			assert.Equal(t, wantIDs, got, "List(%s)", subject)
		}
		var each []string
		require.NoError(t, db.ForEach(ctx, func(info tokenstore.Info) error {
			each = append(each, info.ID.String())
			return nil
		}))
		slices.Sort(ids)
		assert.Equal(t, ids, each, "ForEach")
		require.NoError(t, db.Close())
	}

	// The upgraded file works: the expired tokens are swept, a live
	// sliding one slides, and Check still finds nothing.
	later := schema1Now.Add(time.Minute)
	db := mustOpenAt(t, path, &tokenstore.Options{Now: func() time.Time { return later }, SweepInterval: -1})
	n, err := db.Sweep(ctx)
	require.NoError(t, err)
	expired := 0
	for _, e := range want {
		if e.State != "revoked" && e.Expires <= later.UnixMilli() {
			expired++
		}
	}
	assert.Equal(t, expired, n)
	for _, e := range want {
		if e.State == "live" && strings.HasPrefix(e.Policy, "sliding") {
			info, err := db.Validate(ctx, e.Token)
			require.NoError(t, err)
			assert.Equal(t, later.UnixMilli(), info.LastUsedAt.UnixMilli())
			break
		}
	}
	problems, err := db.Check(ctx)
	require.NoError(t, err)
	require.Empty(t, problems)
}

// TestOpen_UpgradeDamagedRecordCostsOnlyItself: a damaged record in a
// schema-1 file (issue 12: "one damaged record costs only itself", the
// upgrade among the passes it names) is carried over as it was: Open
// succeeds, every other token reads as before, the damaged one is
// ErrCorrupt (never valid), Check names it by ID, and RevokeID removes it.
func TestOpen_UpgradeDamagedRecordCostsOnlyItself(t *testing.T) {
	path, want := loadSchema1(t)
	ctx := t.Context()
	// Damage the record of the last live token: the upgrade has rewritten
	// the ids entries of the others before it meets it.
	var last *schema1Token
	for _, e := range want {
		if e.State == "live" {
			last = e
		}
	}
	h, err := benchFormat.Parse(last.Token)
	require.NoError(t, err)
	updateBolt(t, path, func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("tokens"))
		rec := bytes.Clone(b.Get(h[:]))
		require.NotNil(t, rec)
		rec[len(rec)-1] ^= 0x01
		return b.Put(h[:], rec)
	})
	logs := &logCount{sub: "carried damaged records over"}
	db, err := tokenstore.Open(path, &tokenstore.Options{Now: func() time.Time { return schema1Now }, SweepInterval: -1, Logger: slog.New(logs)})
	require.NoError(t, err, "one damaged record does not stop the upgrade")
	t.Cleanup(func() { _ = db.Close() })
	assert.Equal(t, 1, logs.n, "the damage is reported once")

	_, err = db.Lookup(ctx, last.Token)
	require.ErrorIs(t, err, tokenstore.ErrCorrupt, "the damaged token is never valid")
	_, err = db.Get(ctx, uuid.MustParse(last.ID))
	require.ErrorIs(t, err, tokenstore.ErrCorrupt)
	live := 0
	for _, e := range want {
		if e.State != "live" || e == last {
			continue
		}
		_, err := db.Lookup(ctx, e.Token)
		require.NoError(t, err, "token %s", e.ID)
		live++
	}
	require.Positive(t, live)

	problems, err := db.Check(ctx)
	require.NoError(t, err)
	require.NotEmpty(t, problems)
	assert.Contains(t, strings.Join(problems, "\n"), last.ID, "Check names the damaged token")

	require.NoError(t, db.RevokeID(ctx, uuid.MustParse(last.ID)), "an operator removes what check names")
	problems, err = db.Check(ctx)
	require.NoError(t, err)
	assert.Empty(t, problems)
}
