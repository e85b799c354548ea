package tokenstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

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
