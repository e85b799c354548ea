package tokenstoretest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tokenstore/tokenstore/internal/logtest"

	"github.com/tokenstore/tokenstore"
)

// Token families (issue 17): Rotate retires a token into a tombstone and
// issues its successor in the same family; a rotated-away token presented
// after its grace revokes the family (RFC 9700 §4.14.2); a grace lets a
// client that lost Rotate's answer get the same successor again; rotation
// never extends the family's cap.
//
// What the suite decides where the spec leaves room:
//   - a tombstone is not a token: Stats.Tokens, List, Get and Sweep's count
//     leave it out, during its grace too (Validate of the old token in its
//     grace still answers with the old token's Info);
//   - a Rotate retried within the grace issues nothing: Stats.Issued and
//     Stats.Revoked stay as they were;
//   - RevokeFamily's count is of the tokens it deleted; ending the grace of
//     a rotated-away token is not counted;
//   - the old token's deadline is Policy.Deadline(created, last use) as of
//     the rotation: Rotate is not a use of the old token.

// rotate rotates token, expecting success, and remembers the successor as
// a secret.
func (e *env) rotate(token string, opts ...tokenstore.RotateOption) (string, tokenstore.Info) {
	e.t.Helper()
	next, info, err := e.s.Rotate(e.ctx, token, opts...)
	require.NoError(e.t, err)
	e.secrets.add(next)
	return next, info
}

// batchIssuer is a Store that issues many tokens at once (*tokenstore.DB).
type batchIssuer interface {
	IssueBatch(ctx context.Context, reqs []tokenstore.IssueRequest) ([]tokenstore.Issued, error)
}

// forEacher is a Store that walks every token (both backends).
type forEacher interface {
	ForEach(ctx context.Context, fn func(tokenstore.Info) error) error
}

// testFamilyIDs: FamilyID is the token's own ID until it is rotated, and
// its first ancestor's after, on every path that returns an Info.
func testFamilyIDs(t *testing.T, open Opener) {
	e := newEnv(t, open, func(o *Config) { o.Policy = tokenstore.Sliding(hour, 10*hour) })
	token, info := e.issue("user")
	assert.Equal(t, info.ID, info.FamilyID, "Issue")
	check := func(token string, id, family uuid.UUID, what string) {
		t.Helper()
		got, err := e.s.Validate(e.ctx, token)
		require.NoError(t, err)
		assert.Equal(t, id, got.ID, "%s: Validate's ID", what)
		assert.Equal(t, family, got.FamilyID, "%s: Validate", what)
		got, err = e.s.Lookup(e.ctx, token)
		require.NoError(t, err)
		assert.Equal(t, family, got.FamilyID, "%s: Lookup", what)
		got, err = e.s.Get(e.ctx, id)
		require.NoError(t, err)
		assert.Equal(t, family, got.FamilyID, "%s: Get", what)
		list, err := e.s.List(e.ctx, "user")
		require.NoError(t, err)
		found := false
		for _, in := range list {
			if in.ID == id {
				found = true
				assert.Equal(t, family, in.FamilyID, "%s: List", what)
			}
		}
		assert.True(t, found, "%s: listed", what)
		if fe, ok := e.s.(forEacher); ok {
			found = false
			require.NoError(t, fe.ForEach(e.ctx, func(in tokenstore.Info) error {
				if in.ID == id {
					found = true
					assert.Equal(t, family, in.FamilyID, "%s: ForEach", what)
				}
				return nil
			}))
			assert.True(t, found, "%s: ForEach sees it", what)
		}
	}
	check(token, info.ID, info.ID, "a token never rotated")

	if b, ok := e.s.(batchIssuer); ok {
		out, err := b.IssueBatch(e.ctx, []tokenstore.IssueRequest{{Subject: "user"}, {Subject: "user"}})
		require.NoError(t, err)
		require.Len(t, out, 2)
		for i, is := range out {
			e.secrets.add(is.Token)
			assert.Equal(t, is.Info.ID, is.Info.FamilyID, "IssueBatch's Info %d", i)
			check(is.Token, is.Info.ID, is.Info.ID, "a token from IssueBatch")
		}
	}

	e.clock.Advance(time.Minute)
	next, nextInfo := e.rotate(token)
	assert.Equal(t, info.ID, nextInfo.FamilyID, "Rotate's Info: the first token's ID")
	assert.NotEqual(t, info.ID, nextInfo.ID)
	check(next, nextInfo.ID, info.ID, "a successor")
	e.clock.Advance(time.Minute)
	third, thirdInfo := e.rotate(next)
	assert.Equal(t, info.ID, thirdInfo.FamilyID, "the successor's successor")
	check(third, thirdInfo.ID, info.ID, "a successor's successor")
}

// testReuseRevokesFamily: a rotated-away token presented again (no grace)
// is ErrReused, and revokes the live token of its family, however far down
// the chain; other tokens, of the subject too, are untouched.
func testReuseRevokesFamily(t *testing.T, open Opener) {
	e := newEnv(t, open, func(o *Config) { o.Policy = tokenstore.Sliding(hour, 10*hour) })
	a, aInfo := e.issue("user", tokenstore.WithMetadata(map[string]string{"device": "phone"}))
	other, otherInfo := e.issue("user")
	e.clock.Advance(time.Minute)
	b, bInfo := e.rotate(a)
	e.clock.Advance(time.Minute)
	_, err := e.s.Validate(e.ctx, b)
	require.NoError(t, err)
	c, cInfo := e.rotate(b)
	e.clock.Advance(time.Minute)
	_, err = e.s.Validate(e.ctx, c)
	require.NoError(t, err)

	before := e.s.Stats()
	_, err = e.s.Validate(e.ctx, a)
	e.errIs(err, tokenstore.ErrReused, "the first token, rotated away, presented again")
	after := e.s.Stats()
	assert.Equal(t, before.RejectedReused+1, after.RejectedReused, "Stats.RejectedReused")
	assert.Equal(t, before.Revoked+1, after.Revoked, "Stats.Revoked: C, the family's one live token")
	assert.Equal(t, before.Validated, after.Validated, "a refused Validate is not counted as validated")

	_, err = e.s.Validate(e.ctx, c)
	e.errIs(err, tokenstore.ErrNotFound, "C, two rotations down the chain, is revoked")
	_, err = e.s.Get(e.ctx, cInfo.ID)
	e.errIs(err, tokenstore.ErrNotFound, "and its ID")
	e.errIs(e.s.RevokeID(e.ctx, cInfo.ID), tokenstore.ErrNotFound, "RevokeID of C")
	_, err = e.s.Get(e.ctx, bInfo.ID)
	e.errIs(err, tokenstore.ErrNotFound, "B's ID")

	list, err := e.s.List(e.ctx, "user")
	require.NoError(t, err)
	require.Len(t, list, 1, "the subject's other token only")
	assert.Equal(t, otherInfo.ID, list[0].ID)
	got, err := e.s.Validate(e.ctx, other)
	require.NoError(t, err, "another family of the subject is untouched")
	assert.Equal(t, otherInfo.ID, got.ID)
	assert.Equal(t, int64(1), e.s.Stats().Tokens, "Stats.Tokens: tombstones are not tokens")

	// Presented again, and B (rotated away too): still ErrReused, revoking
	// nothing more.
	for name, token := range map[string]string{"A again": a, "B": b} {
		before = e.s.Stats()
		_, err = e.s.Validate(e.ctx, token)
		e.errIs(err, tokenstore.ErrReused, name)
		after = e.s.Stats()
		assert.Equal(t, before.RejectedReused+1, after.RejectedReused, "%s: Stats.RejectedReused", name)
		assert.Equal(t, before.Revoked, after.Revoked, "%s: nothing left to revoke", name)
	}
	_, err = e.s.Lookup(e.ctx, c)
	e.errIs(err, tokenstore.ErrNotFound, "C stays revoked")
	_, err = e.s.Validate(e.ctx, other)
	require.NoError(t, err)
	_ = aInfo
}

// testReusePaths: Lookup and Rotate detect reuse as Validate does, and a
// rotation is tombstoned whatever revoked the family's live token since.
func testReusePaths(t *testing.T, open Opener) {
	e := newEnv(t, open, func(o *Config) { o.Policy = tokenstore.Absolute(hour) })
	paths := map[string]func(token string) error{
		"Lookup": func(token string) error {
			_, err := e.s.Lookup(e.ctx, token)
			return err
		},
		"Rotate": func(token string) error {
			next, _, err := e.s.Rotate(e.ctx, token)
			if next != "" {
				t.Errorf("Rotate of a reused token returned a token")
			}
			return err
		},
		"Rotate with a grace": func(token string) error {
			_, _, err := e.s.Rotate(e.ctx, token, tokenstore.WithGrace(time.Minute))
			return err
		},
	}
	for name, present := range paths {
		a, _ := e.issue("user")
		e.clock.Advance(time.Second)
		b, bInfo := e.rotate(a)
		before := e.s.Stats()
		e.errIs(present(a), tokenstore.ErrReused, name)
		after := e.s.Stats()
		assert.Equal(t, before.RejectedReused+1, after.RejectedReused, "%s: Stats.RejectedReused", name)
		assert.Equal(t, before.Revoked+1, after.Revoked, "%s: Stats.Revoked", name)
		assert.Equal(t, before.Issued, after.Issued, "%s: nothing issued", name)
		_, err := e.s.Lookup(e.ctx, b)
		e.errIs(err, tokenstore.ErrNotFound, "%s: the successor is revoked", name)
		_, err = e.s.Get(e.ctx, bInfo.ID)
		e.errIs(err, tokenstore.ErrNotFound, "%s: Get of the successor", name)
	}
	list, err := e.s.List(e.ctx, "user")
	require.NoError(t, err)
	assert.Empty(t, list, "no reuse left a token")

	// The successor revoked by Revoke, RevokeID or RevokeSubject: the old
	// token is still a reuse (revoking nothing).
	revokers := map[string]func(token string, info tokenstore.Info) error{
		"Revoke":   func(token string, _ tokenstore.Info) error { return e.s.Revoke(e.ctx, token) },
		"RevokeID": func(_ string, info tokenstore.Info) error { return e.s.RevokeID(e.ctx, info.ID) },
		"RevokeSubject": func(string, tokenstore.Info) error {
			n, err := e.s.RevokeSubject(e.ctx, "user")
			assert.Equal(t, 1, n, "RevokeSubject counts the successor")
			return err
		},
	}
	for name, revoke := range revokers {
		a, _ := e.issue("user")
		e.clock.Advance(time.Second)
		b, bInfo := e.rotate(a)
		require.NoError(t, revoke(b, bInfo), name)
		before := e.s.Stats()
		_, err := e.s.Validate(e.ctx, a)
		e.errIs(err, tokenstore.ErrReused, "after %s of the successor", name)
		assert.Equal(t, before.Revoked, e.s.Stats().Revoked, "%s: nothing left to revoke", name)
	}
}

// testGrace: within the grace the old token validates as itself, and a
// retried Rotate returns the same successor; at the grace's end the old
// token is a reuse.
func testGrace(t *testing.T, open Opener) {
	e := newEnv(t, open, func(o *Config) { o.Policy = tokenstore.Absolute(hour) })
	policy := tokenstore.Sliding(hour, 10*hour)
	meta := map[string]string{"scope": "read", "device": "laptop"}
	t0 := e.clock.Now()
	a, aInfo := e.issue("user", tokenstore.WithPolicy(policy), tokenstore.WithMetadata(meta))
	const grace = 5 * time.Minute

	rotatedAt := e.clock.Advance(10 * time.Minute)
	before := e.s.Stats()
	b, bInfo := e.rotate(a, tokenstore.WithGrace(grace))
	afterRotate := e.s.Stats()
	assert.Equal(t, before.Issued+1, afterRotate.Issued, "Issued")
	assert.Equal(t, before.Revoked+1, afterRotate.Revoked, "Revoked: the old token is retired, grace or not")
	assert.Equal(t, aInfo.ID, bInfo.FamilyID)
	timeEq(t, rotatedAt, bInfo.CreatedAt, "the successor's CreatedAt")
	timeEq(t, rotatedAt.Add(hour), bInfo.ExpiresAt, "the successor's ExpiresAt")
	graceEnd := rotatedAt.Add(grace)
	// A was never used: its own deadline is t0 + 1h, after the grace's end.
	wantExp := graceEnd
	if d := t0.Add(hour); d.Before(wantExp) {
		wantExp = d
	}

	e.clock.Advance(time.Minute)
	got, err := e.s.Validate(e.ctx, a)
	require.NoError(t, err, "the old token works within its grace")
	sameToken(t, aInfo, got)
	assert.Equal(t, aInfo.ID, got.FamilyID, "FamilyID")
	timeEq(t, wantExp, got.ExpiresAt, "the old token's ExpiresAt: min(its deadline, the grace's end)")
	got, err = e.s.Lookup(e.ctx, a)
	require.NoError(t, err, "Lookup too")
	sameToken(t, aInfo, got)
	timeEq(t, wantExp, got.ExpiresAt, "Lookup's ExpiresAt")

	// A tombstone, even in its grace, is not a token of the store.
	_, err = e.s.Get(e.ctx, aInfo.ID)
	e.errIs(err, tokenstore.ErrNotFound, "Get of the old token's ID")
	list, err := e.s.List(e.ctx, "user")
	require.NoError(t, err)
	require.Len(t, list, 1)
	assert.Equal(t, bInfo.ID, list[0].ID, "List shows the successor only")
	assert.Equal(t, int64(1), e.s.Stats().Tokens, "Stats.Tokens")

	// A client that lost the answer rotates again: the same successor,
	// nothing issued.
	for i := range 3 {
		e.clock.Advance(time.Minute)
		before := e.s.Stats()
		again, againInfo, err := e.s.Rotate(e.ctx, a, tokenstore.WithGrace(grace))
		require.NoError(t, err, "retry %d within the grace", i)
		assert.Equal(t, b, again, "retry %d: the same successor token", i)
		assert.Equal(t, bInfo.ID, againInfo.ID, "retry %d: the successor's ID", i)
		assert.Equal(t, aInfo.ID, againInfo.FamilyID, "retry %d: FamilyID", i)
		timeEq(t, bInfo.CreatedAt, againInfo.CreatedAt, "the successor's CreatedAt")
		timeEq(t, bInfo.ExpiresAt, againInfo.ExpiresAt, "the successor's ExpiresAt")
		assert.Equal(t, meta, againInfo.Metadata)
		after := e.s.Stats()
		assert.Equal(t, before.Issued, after.Issued, "retry %d issues nothing", i)
		assert.Equal(t, before.Revoked, after.Revoked, "retry %d revokes nothing", i)
	}
	list, err = e.s.List(e.ctx, "user")
	require.NoError(t, err)
	assert.Len(t, list, 1, "one successor, however often rotated")

	// The grace ends: the old token is a reuse, and its family is revoked.
	e.clock.Advance(graceEnd.Sub(e.clock.Now()) - time.Millisecond)
	_, err = e.s.Lookup(e.ctx, a)
	require.NoError(t, err, "1ms before the grace's end")
	e.clock.Advance(time.Millisecond)
	_, err = e.s.Validate(e.ctx, a)
	e.errIs(err, tokenstore.ErrReused, "at the grace's end")
	_, err = e.s.Validate(e.ctx, b)
	e.errIs(err, tokenstore.ErrNotFound, "the successor is revoked")
	_, _, err = e.s.Rotate(e.ctx, a, tokenstore.WithGrace(grace))
	e.errIs(err, tokenstore.ErrReused, "a retry after the grace")

	// A grace that outlasts the old token: its deadline ends it, and then
	// the old token is unknown, as any token past its deadline and swept.
	d, dInfo := e.issue("user") // Absolute(hour), the store's default
	e.clock.Advance(58 * time.Minute)
	next, nextInfo := e.rotate(d, tokenstore.WithGrace(5*time.Minute))
	timeEq(t, dInfo.ExpiresAt, nextInfo.ExpiresAt, "the successor: the family's cap")
	got, err = e.s.Validate(e.ctx, d)
	require.NoError(t, err)
	timeEq(t, dInfo.ExpiresAt, got.ExpiresAt, "the old token's ExpiresAt: its deadline, before the grace's end")
	e.clock.Set(dInfo.ExpiresAt)
	_, err = e.s.Validate(e.ctx, d)
	e.errIs(err, tokenstore.ErrNotFound, "at its deadline, within the grace")
	_, err = e.s.Validate(e.ctx, next)
	e.errIs(err, tokenstore.ErrExpired, "the successor at the family's cap")

	// MaxGrace itself is accepted.
	c, _ := e.issue("user")
	e.rotate(c, tokenstore.WithGrace(tokenstore.MaxGrace))
	e.clock.Advance(tokenstore.MaxGrace - time.Millisecond)
	_, err = e.s.Validate(e.ctx, c)
	require.NoError(t, err, "within MaxGrace")
}

// testReuseEndsGrace: a reuse revokes the whole family, the token still
// in its grace included: Z rotated into A, A into B with a grace; Z
// presented again leaves neither A nor B working.
func testReuseEndsGrace(t *testing.T, open Opener) {
	e := newEnv(t, open, func(o *Config) { o.Policy = tokenstore.Sliding(hour, 10*hour) })
	z, zInfo := e.issue("user")
	e.clock.Advance(time.Minute)
	a, _ := e.rotate(z)
	e.clock.Advance(time.Minute)
	b, _ := e.rotate(a, tokenstore.WithGrace(5*time.Minute))
	_, err := e.s.Lookup(e.ctx, a)
	require.NoError(t, err, "A in its grace")

	e.clock.Advance(time.Second)
	before := e.s.Stats()
	_, err = e.s.Validate(e.ctx, z)
	e.errIs(err, tokenstore.ErrReused, "Z, rotated away, presented again")
	assert.Equal(t, before.RejectedReused+1, e.s.Stats().RejectedReused)
	_, err = e.s.Validate(e.ctx, b)
	e.errIs(err, tokenstore.ErrNotFound, "B is revoked")
	_, err = e.s.Validate(e.ctx, a)
	e.errIs(err, tokenstore.ErrReused, "A's grace ended with its family")
	_, _, err = e.s.Rotate(e.ctx, a, tokenstore.WithGrace(5*time.Minute))
	e.errIs(err, tokenstore.ErrReused, "and a retry gets no successor")
	n, err := e.s.RevokeFamily(e.ctx, zInfo.ID)
	require.NoError(t, err)
	assert.Zero(t, n, "nothing left in the family")
}

// testGraceConcurrent: 32 simultaneous Rotates of one token with a grace
// give all 32 the same successor (none of them uses it); without a grace
// exactly one succeeds and the 31 others are reuses, which revoke the
// winner's successor.
func testGraceConcurrent(t *testing.T, open Opener) {
	const n = 32
	e := newEnv(t, open, func(o *Config) { o.Policy = tokenstore.Sliding(hour, 10*hour) })
	rotateAll := func(token string, opts ...tokenstore.RotateOption) ([]string, []tokenstore.Info, []error) {
		tokens, infos, errs := make([]string, n), make([]tokenstore.Info, n), make([]error, n)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range n {
			wg.Go(func() {
				<-start
				tokens[i], infos[i], errs[i] = e.s.Rotate(e.ctx, token, opts...)
				if tokens[i] != "" {
					e.secrets.add(tokens[i])
				}
			})
		}
		close(start)
		wg.Wait()
		return tokens, infos, errs
	}

	a, aInfo := e.issue("user")
	e.clock.Advance(time.Minute)
	before := e.s.Stats()
	tokens, infos, errs := rotateAll(a, tokenstore.WithGrace(time.Minute))
	for i := range n {
		require.NoError(t, errs[i], "Rotate %d within the grace", i)
		assert.Equal(t, tokens[0], tokens[i], "Rotate %d: the same successor", i)
		assert.Equal(t, infos[0].ID, infos[i].ID, "Rotate %d: the same successor's ID", i)
		assert.Equal(t, aInfo.ID, infos[i].FamilyID)
	}
	after := e.s.Stats()
	assert.Equal(t, before.Issued+1, after.Issued, "exactly one successor issued")
	assert.Equal(t, before.Revoked+1, after.Revoked, "the old token retired once")
	assert.Equal(t, before.RejectedReused, after.RejectedReused, "no reuse")
	list, err := e.s.List(e.ctx, "user")
	require.NoError(t, err)
	require.Len(t, list, 1, "one live token")
	assert.Equal(t, infos[0].ID, list[0].ID)
	got, err := e.s.Validate(e.ctx, tokens[0])
	require.NoError(t, err, "the successor works")
	assert.Equal(t, infos[0].ID, got.ID)

	// Without a grace: one winner, 31 reuses, and the winner's successor
	// is revoked by them.
	c, _ := e.issue("other")
	e.clock.Advance(time.Minute)
	before = e.s.Stats()
	tokens, _, errs = rotateAll(c)
	winner := -1
	for i := range n {
		switch {
		case errs[i] == nil:
			require.Equal(t, -1, winner, "a second Rotate succeeded")
			winner = i
		case errors.Is(errs[i], tokenstore.ErrReused):
			assert.Empty(t, tokens[i])
			e.noSecret(errs[i])
		default:
			t.Fatalf("Rotate %d: %v, want nil or ErrReused", i, errs[i])
		}
	}
	require.NotEqual(t, -1, winner, "one Rotate succeeded")
	after = e.s.Stats()
	assert.Equal(t, before.Issued+1, after.Issued, "one successor issued")
	assert.Equal(t, before.RejectedReused+n-1, after.RejectedReused, "31 reuses")
	assert.Equal(t, before.Revoked+2, after.Revoked, "the old token, then its successor")
	_, err = e.s.Validate(e.ctx, tokens[winner])
	e.errIs(err, tokenstore.ErrNotFound, "the winner's successor is revoked by the reuses")
	list, err = e.s.List(e.ctx, "other")
	require.NoError(t, err)
	assert.Empty(t, list)
}

// testGraceEndsAtFirstUse: the successor's first Validate, Lookup or
// Rotate ends the old token's grace at once.
func testGraceEndsAtFirstUse(t *testing.T, open Opener) {
	uses := map[string]func(e *env, b string) (live string){
		"Validate": func(e *env, b string) string {
			_, err := e.s.Validate(e.ctx, b)
			require.NoError(e.t, err)
			return b
		},
		"Lookup": func(e *env, b string) string {
			_, err := e.s.Lookup(e.ctx, b)
			require.NoError(e.t, err)
			return b
		},
		"Rotate": func(e *env, b string) string {
			c, _ := e.rotate(b)
			return c
		},
	}
	for name, use := range uses {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, open, func(o *Config) { o.Policy = tokenstore.Sliding(hour, 10*hour) })
			a, _ := e.issue("user")
			e.clock.Advance(time.Minute)
			b, _ := e.rotate(a, tokenstore.WithGrace(5*time.Minute))
			_, err := e.s.Validate(e.ctx, a)
			require.NoError(t, err, "in its grace, before the successor's use")
			e.clock.Advance(time.Second)
			live := use(e, b)
			e.clock.Advance(time.Second)
			before := e.s.Stats()
			_, err = e.s.Validate(e.ctx, a)
			e.errIs(err, tokenstore.ErrReused, "after the successor's first %s", name)
			assert.Equal(t, before.RejectedReused+1, e.s.Stats().RejectedReused)
			_, err = e.s.Lookup(e.ctx, live)
			e.errIs(err, tokenstore.ErrNotFound, "the family's live token is revoked")
			_, _, err = e.s.Rotate(e.ctx, a, tokenstore.WithGrace(5*time.Minute))
			e.errIs(err, tokenstore.ErrReused, "a retried Rotate gets no successor")
		})
	}

	// The successor used within the same millisecond as the rotation: the
	// use still counts.
	t.Run("SameInstant", func(t *testing.T) {
		e := newEnv(t, open, func(o *Config) { o.Policy = tokenstore.Sliding(hour, 10*hour) })
		a, _ := e.issue("user")
		e.clock.Advance(time.Minute)
		b, _ := e.rotate(a, tokenstore.WithGrace(5*time.Minute))
		_, err := e.s.Validate(e.ctx, b)
		require.NoError(t, err)
		_, err = e.s.Validate(e.ctx, a)
		e.errIs(err, tokenstore.ErrReused, "the successor was used")
	})
}

// testGraceEndedStaysEnded: a grace ended by an event (the successor's
// first use, a reuse, RevokeFamily) stays ended when the clock is then
// set back into the grace's time: the old token is ErrReused, never
// answered valid again, and a retried Rotate gets no successor. Only a
// grace that nothing but time ended may reopen under a clock set back, as
// a lifetime may (the README's "Not promised"). Each case passes the
// grace's end by the clock (by a second, and past MaxGrace after the
// rotation) before the event, then sets the clock back into the grace;
// TouchInterval is long, so that a use is not written for its own sake.
func testGraceEndedStaysEnded(t *testing.T, open Opener) {
	const grace = time.Minute
	for _, past := range []time.Duration{grace + time.Second, tokenstore.MaxGrace + time.Second} {
		uses := map[string]func(e *env, b string){
			"Validate": func(e *env, b string) {
				_, err := e.s.Validate(e.ctx, b)
				require.NoError(e.t, err)
			},
			"Lookup": func(e *env, b string) {
				_, err := e.s.Lookup(e.ctx, b)
				require.NoError(e.t, err)
			},
		}
		for name, use := range uses {
			t.Run(fmt.Sprintf("SuccessorUsed/%s/%s", name, past), func(t *testing.T) {
				e := newEnv(t, open, func(o *Config) {
					o.Policy = tokenstore.Sliding(hour, 10*hour)
					o.TouchInterval = hour
				})
				a, _ := e.issue("user")
				e.clock.Advance(time.Minute)
				b, _ := e.rotate(a, tokenstore.WithGrace(grace))
				rotated := e.clock.Now()
				e.clock.Advance(past)
				use(e, b) // the successor's first use, after the grace's end by the clock
				e.clock.Set(rotated.Add(grace / 2))
				_, err := e.s.Lookup(e.ctx, a)
				e.errIs(err, tokenstore.ErrReused, "the successor was used: the clock set back reopens no grace")
				_, err = e.s.Validate(e.ctx, b)
				e.errIs(err, tokenstore.ErrNotFound, "the reuse revoked the family")
				_, _, err = e.s.Rotate(e.ctx, a, tokenstore.WithGrace(grace))
				e.errIs(err, tokenstore.ErrReused, "a retried Rotate gets no successor")
			})
		}
		// A successor in a new family outlives its old family's
		// revocation: the old token's grace must stay ended by the event
		// itself.
		enders := map[string]func(e *env, a string, aInfo tokenstore.Info){
			"Reuse": func(e *env, a string, _ tokenstore.Info) {
				_, err := e.s.Validate(e.ctx, a)
				e.errIs(err, tokenstore.ErrReused, "presented after its grace")
			},
			"RevokeFamily": func(e *env, _ string, aInfo tokenstore.Info) {
				_, err := e.s.RevokeFamily(e.ctx, aInfo.FamilyID)
				require.NoError(e.t, err)
			},
		}
		for name, end := range enders {
			t.Run(fmt.Sprintf("%s/%s", name, past), func(t *testing.T) {
				e := newEnv(t, open, func(o *Config) {
					o.Policy = tokenstore.Sliding(hour, 10*hour)
					o.TouchInterval = hour
				})
				a, aInfo := e.issue("user")
				e.clock.Advance(time.Minute)
				b, _ := e.rotate(a, tokenstore.WithGrace(grace), tokenstore.WithNewFamily())
				rotated := e.clock.Now()
				e.clock.Advance(past)
				end(e, a, aInfo)
				e.clock.Set(rotated.Add(grace / 2))
				_, err := e.s.Lookup(e.ctx, a)
				e.errIs(err, tokenstore.ErrReused, "after the %s, the clock set back reopens no grace", name)
				_, _, err = e.s.Rotate(e.ctx, a, tokenstore.WithGrace(grace))
				e.errIs(err, tokenstore.ErrReused, "a retried Rotate gets no successor")
				_, err = e.s.Validate(e.ctx, b)
				require.NoError(t, err, "the new family is untouched")
			})
		}
	}

	// A grace that only time ended reopens under a clock set back (both
	// stores: the grace is a time, as a lifetime is).
	t.Run("TimeOnly", func(t *testing.T) {
		e := newEnv(t, open, func(o *Config) { o.Policy = tokenstore.Sliding(hour, 10*hour) })
		a, aInfo := e.issue("user")
		e.clock.Advance(time.Minute)
		b, _ := e.rotate(a, tokenstore.WithGrace(grace))
		rotated := e.clock.Now()
		e.clock.Advance(tokenstore.MaxGrace + time.Second)
		e.clock.Set(rotated.Add(grace / 2))
		got, err := e.s.Lookup(e.ctx, a)
		require.NoError(t, err, "nothing but time ended the grace")
		assert.Equal(t, aInfo.ID, got.ID)
		_, err = e.s.Validate(e.ctx, b)
		require.NoError(t, err)
		_, err = e.s.Lookup(e.ctx, a)
		e.errIs(err, tokenstore.ErrReused, "the successor's use ends it")
	})
}

// testGraceSuccessorGone: a retry within the grace whose successor has
// been revoked meanwhile gets ErrNotFound and issues nothing.
func testGraceSuccessorGone(t *testing.T, open Opener) {
	e := newEnv(t, open, func(o *Config) { o.Policy = tokenstore.Absolute(hour) })
	revokers := map[string]func(token string, info tokenstore.Info) error{
		"Revoke":   func(token string, _ tokenstore.Info) error { return e.s.Revoke(e.ctx, token) },
		"RevokeID": func(_ string, info tokenstore.Info) error { return e.s.RevokeID(e.ctx, info.ID) },
	}
	for name, revoke := range revokers {
		a, _ := e.issue("user")
		e.clock.Advance(time.Second)
		b, bInfo := e.rotate(a, tokenstore.WithGrace(5*time.Minute))
		require.NoError(t, revoke(b, bInfo), name)
		before := e.s.Stats()
		next, _, err := e.s.Rotate(e.ctx, a, tokenstore.WithGrace(5*time.Minute))
		e.errIs(err, tokenstore.ErrNotFound, "retry after %s of the successor", name)
		assert.Empty(t, next)
		assert.Equal(t, before.Issued, e.s.Stats().Issued, "%s: nothing issued", name)
		list, err := e.s.List(e.ctx, "user")
		require.NoError(t, err)
		assert.Empty(t, list, "%s: no token left", name)
	}
}

// testRevokeInGrace: Revoke of a token rotated away and still in its grace
// (which Validate accepts) revokes it as any token: its unused successor
// and its tombstone are deleted, so it is ErrNotFound everywhere after,
// never ErrReused (a client that lost Rotate's answer and logs out, or
// retries its logout, is not taken for a thief). Stats.Revoked counts the
// successor. After the grace, or once the successor was used, Revoke of
// the old token is ErrNotFound and leaves the successor alone.
func testRevokeInGrace(t *testing.T, open Opener) {
	e := newEnv(t, open, func(o *Config) { o.Policy = tokenstore.Sliding(hour, 10*hour) })
	const grace = 5 * time.Minute
	gone := func(token, what string) {
		t.Helper()
		_, err := e.s.Validate(e.ctx, token)
		e.errIs(err, tokenstore.ErrNotFound, "%s: Validate", what)
		_, err = e.s.Lookup(e.ctx, token)
		e.errIs(err, tokenstore.ErrNotFound, "%s: Lookup", what)
	}

	// Z rotated into A, A into B, each with a grace; A's rotation ends Z's.
	z, _ := e.issue("user")
	e.clock.Advance(time.Minute)
	a, aInfo := e.rotate(z, tokenstore.WithGrace(grace))
	e.clock.Advance(time.Minute)
	b, bInfo := e.rotate(a, tokenstore.WithGrace(grace))
	e.clock.Advance(time.Second)
	_, err := e.s.Validate(e.ctx, a)
	require.NoError(t, err, "A in its grace")

	before := e.s.Stats()
	require.NoError(t, e.s.Revoke(e.ctx, a), "Revoke of a token that validates")
	after := e.s.Stats()
	assert.Equal(t, before.Revoked+1, after.Revoked, "Stats.Revoked: the successor")
	assert.Equal(t, before.Issued, after.Issued)
	gone(a, "A, revoked")
	gone(b, "B, its unused successor")
	_, _, err = e.s.Rotate(e.ctx, a, tokenstore.WithGrace(grace))
	e.errIs(err, tokenstore.ErrNotFound, "a retried Rotate of A gets no successor")
	_, _, err = e.s.Rotate(e.ctx, a)
	e.errIs(err, tokenstore.ErrNotFound, "nor one without a grace")
	e.errIs(e.s.Revoke(e.ctx, a), tokenstore.ErrNotFound, "a retried logout")
	_, err = e.s.Get(e.ctx, bInfo.ID)
	e.errIs(err, tokenstore.ErrNotFound, "B's ID")
	_, err = e.s.Get(e.ctx, aInfo.ID)
	e.errIs(err, tokenstore.ErrNotFound, "A's ID")
	// Z is within its grace's time, which A's rotation ended: the family
	// has no live token left, so Z is ErrNotFound, as when a successor
	// used is then revoked.
	gone(z, "Z, rotated into A")
	list, err := e.s.List(e.ctx, "user")
	require.NoError(t, err)
	assert.Empty(t, list, "no token left")
	n, err := e.s.RevokeFamily(e.ctx, aInfo.FamilyID)
	require.NoError(t, err)
	assert.Zero(t, n, "nothing left in the family")
	after = e.s.Stats()
	assert.Equal(t, before.RejectedReused, after.RejectedReused, "no reuse")
	assert.Equal(t, before.Revoked+1, after.Revoked, "nothing else revoked")

	// Rotated into a new family: the same.
	c, _ := e.issue("new family")
	e.clock.Advance(time.Minute)
	d, dInfo := e.rotate(c, tokenstore.WithGrace(grace), tokenstore.WithNewFamily())
	before = e.s.Stats()
	require.NoError(t, e.s.Revoke(e.ctx, c), "Revoke of a token in its grace, rotated into a new family")
	assert.Equal(t, before.Revoked+1, e.s.Stats().Revoked)
	gone(c, "C, revoked")
	gone(d, "D, its successor in a new family")
	e.errIs(e.s.Revoke(e.ctx, c), tokenstore.ErrNotFound, "a retried logout")
	n, err = e.s.RevokeFamily(e.ctx, dInfo.FamilyID)
	require.NoError(t, err)
	assert.Zero(t, n)
	assert.Equal(t, before.RejectedReused, e.s.Stats().RejectedReused, "no reuse")

	// After the grace, or once the successor was used, the old token is
	// no token to Revoke: nothing is revoked, the successor lives on.
	ends := map[string]func(next string){
		"GraceOver":     func(string) { e.clock.Advance(grace) },
		"SuccessorUsed": func(next string) { _, err := e.s.Validate(e.ctx, next); require.NoError(t, err) },
	}
	for name, end := range ends {
		old, _ := e.issue(name)
		e.clock.Advance(time.Minute)
		next, nextInfo := e.rotate(old, tokenstore.WithGrace(grace))
		end(next)
		before = e.s.Stats()
		e.errIs(e.s.Revoke(e.ctx, old), tokenstore.ErrNotFound, "%s: Revoke of the old token", name)
		after = e.s.Stats()
		assert.Equal(t, before.Revoked, after.Revoked, "%s: nothing revoked", name)
		assert.Equal(t, before.RejectedReused, after.RejectedReused, "%s: Revoke is no presentation", name)
		got, err := e.s.Validate(e.ctx, next)
		require.NoError(t, err, "%s: the successor is left to its holder", name)
		assert.Equal(t, nextInfo.ID, got.ID)
	}
}

// testCapSliding: 100 rotations of a sliding token each restart its idle
// window, but never past the first token's created + max; at that instant
// the chain is dead.
func testCapSliding(t *testing.T, open Opener) {
	const idle, maxLife = 2 * hour, 10 * hour
	e := newEnv(t, open, func(o *Config) { o.Policy = tokenstore.Sliding(idle, maxLife) })
	token, first := e.issue("user")
	born := first.CreatedAt
	capAt := born.Add(maxLife)
	for i := range 100 {
		now := e.clock.Advance(5 * time.Minute)
		next, info := e.rotate(token)
		want := now.Add(idle)
		if want.After(capAt) {
			want = capAt
		}
		timeEq(t, want, info.ExpiresAt, fmt.Sprintf("rotation %d: min(now + idle, born + max)", i))
		timeEq(t, now, info.CreatedAt, fmt.Sprintf("rotation %d: CreatedAt", i))
		assert.Equal(t, first.ID, info.FamilyID, "rotation %d: FamilyID", i)
		assert.Equal(t, tokenstore.Sliding(idle, maxLife), info.Policy, "rotation %d: the policy is kept", i)
		token = next
	}
	// Uses slide it too, within the cap.
	for e.clock.Now().Add(time.Hour).Before(capAt) {
		e.clock.Advance(time.Hour)
		got, err := e.s.Validate(e.ctx, token)
		require.NoError(t, err)
		assert.False(t, got.ExpiresAt.After(capAt), "a use never passes the cap: %v", got.ExpiresAt)
	}
	e.clock.Advance(capAt.Sub(e.clock.Now()) - time.Millisecond)
	got, err := e.s.Lookup(e.ctx, token)
	require.NoError(t, err, "1ms before the cap")
	timeEq(t, capAt, got.ExpiresAt, "ExpiresAt at the end")
	next, info := e.rotate(token)
	timeEq(t, capAt, info.ExpiresAt, "a rotation 1ms before the cap")
	token = next
	e.clock.Advance(time.Millisecond)
	_, err = e.s.Validate(e.ctx, token)
	e.errIs(err, tokenstore.ErrExpired, "at the first token's created + max")
	_, _, err = e.s.Rotate(e.ctx, token)
	e.errIs(err, tokenstore.ErrExpired, "rotating at the cap")

	// Without a cap, rotation restarts the idle window every time.
	e2 := newEnv(t, open, func(o *Config) { o.Policy = tokenstore.Sliding(hour, 0) })
	token, _ = e2.issue("user")
	for i := range 30 {
		now := e2.clock.Advance(50 * time.Minute)
		next, info := e2.rotate(token)
		timeEq(t, now.Add(hour), info.ExpiresAt, fmt.Sprintf("no cap: rotation %d", i))
		token = next
	}
}

// testCapAbsolute: every successor of an absolute token expires when the
// first token does.
func testCapAbsolute(t *testing.T, open Opener) {
	const ttl = 10 * hour
	e := newEnv(t, open, func(o *Config) { o.Policy = tokenstore.Absolute(ttl) })
	token, first := e.issue("user")
	capAt := first.ExpiresAt
	for i := range 100 {
		now := e.clock.Advance(5 * time.Minute)
		next, info := e.rotate(token, tokenstore.WithGrace(time.Minute))
		timeEq(t, capAt, info.ExpiresAt, fmt.Sprintf("rotation %d: the first token's ExpiresAt", i))
		timeEq(t, now, info.CreatedAt, fmt.Sprintf("rotation %d: CreatedAt", i))
		assert.Equal(t, first.ID, info.FamilyID)
		token = next
	}
	e.clock.Advance(capAt.Sub(e.clock.Now()) - time.Millisecond)
	_, err := e.s.Validate(e.ctx, token)
	require.NoError(t, err, "1ms before the cap")
	e.clock.Advance(time.Millisecond)
	_, err = e.s.Validate(e.ctx, token)
	e.errIs(err, tokenstore.ErrExpired, "at the cap")
	_, _, err = e.s.Rotate(e.ctx, token)
	e.errIs(err, tokenstore.ErrExpired, "rotating at the cap")
}

// testNewFamily: WithNewFamily starts a family at the successor, whose cap
// counts from now; the old token is still tombstoned, and its reuse spares
// the new family.
func testNewFamily(t *testing.T, open Opener) {
	e := newEnv(t, open, func(o *Config) { o.Policy = tokenstore.Absolute(hour) })
	a, aInfo := e.issue("user")
	now := e.clock.Advance(30 * time.Minute)
	b, bInfo := e.rotate(a, tokenstore.WithNewFamily())
	assert.Equal(t, bInfo.ID, bInfo.FamilyID, "the successor heads a new family")
	timeEq(t, now.Add(hour), bInfo.ExpiresAt, "its cap counts from now")
	got, err := e.s.Validate(e.ctx, b)
	require.NoError(t, err)
	assert.Equal(t, bInfo.ID, got.FamilyID)

	e.clock.Advance(time.Minute)
	c, cInfo := e.rotate(b)
	assert.Equal(t, bInfo.ID, cInfo.FamilyID, "the new family's next token")
	timeEq(t, now.Add(hour), cInfo.ExpiresAt, "within the new family's cap")

	before := e.s.Stats()
	_, err = e.s.Validate(e.ctx, a)
	e.errIs(err, tokenstore.ErrReused, "the old token is still tombstoned")
	assert.Equal(t, before.Revoked, e.s.Stats().Revoked, "its old family has no live token")
	got, err = e.s.Validate(e.ctx, c)
	require.NoError(t, err, "the new family is untouched")
	assert.Equal(t, bInfo.ID, got.FamilyID)
	_ = aInfo

	// Past the old family's cap, the new one lives on.
	e.clock.Advance(40 * time.Minute)
	_, err = e.s.Validate(e.ctx, c)
	require.NoError(t, err)
}

// testRevokeFamily: RevokeFamily deletes the family's live tokens and only
// them, leaves its tombstones, and answers 0 for an unknown family.
func testRevokeFamily(t *testing.T, open Opener) {
	e := newEnv(t, open, func(o *Config) { o.Policy = tokenstore.Sliding(hour, 10*hour) })
	a, aInfo := e.issue("user")
	e.clock.Advance(time.Minute)
	b, _ := e.rotate(a)
	e.clock.Advance(time.Minute)
	c, cInfo := e.rotate(b)
	other, otherInfo := e.issue("user")
	single, singleInfo := e.issue("user")
	stranger, _ := e.issue("someone else")

	before := e.s.Stats()
	n, err := e.s.RevokeFamily(e.ctx, aInfo.ID)
	require.NoError(t, err)
	assert.Equal(t, 1, n, "the family's one live token")
	assert.Equal(t, before.Revoked+1, e.s.Stats().Revoked, "Stats.Revoked")
	_, err = e.s.Validate(e.ctx, c)
	e.errIs(err, tokenstore.ErrNotFound, "the live token is revoked")
	_, err = e.s.Get(e.ctx, cInfo.ID)
	e.errIs(err, tokenstore.ErrNotFound, "and its ID")
	for name, token := range map[string]string{"A": a, "B": b} {
		_, err = e.s.Validate(e.ctx, token)
		e.errIs(err, tokenstore.ErrReused, "%s: the tombstones stay", name)
	}
	for _, token := range []string{other, single, stranger} {
		_, err = e.s.Validate(e.ctx, token)
		require.NoError(t, err, "other families are untouched")
	}

	n, err = e.s.RevokeFamily(e.ctx, aInfo.ID)
	require.NoError(t, err)
	assert.Zero(t, n, "again: nothing left")
	n, err = e.s.RevokeFamily(e.ctx, uuid.Must(uuid.NewV7()))
	require.NoError(t, err, "an unknown family is not an error")
	assert.Zero(t, n)
	n, err = e.s.RevokeFamily(e.ctx, uuid.Nil)
	require.NoError(t, err)
	assert.Zero(t, n)

	// A token never rotated is a family of one.
	n, err = e.s.RevokeFamily(e.ctx, singleInfo.ID)
	require.NoError(t, err)
	assert.Equal(t, 1, n, "a never-rotated token is its own family")
	_, err = e.s.Validate(e.ctx, single)
	e.errIs(err, tokenstore.ErrNotFound)

	// A family with a token in its grace: both stop working.
	e.clock.Advance(time.Minute)
	next, nextInfo := e.rotate(other, tokenstore.WithGrace(5*time.Minute))
	n, err = e.s.RevokeFamily(e.ctx, otherInfo.ID)
	require.NoError(t, err)
	assert.Equal(t, 1, n, "the successor (a grace ended is not counted)")
	_, err = e.s.Validate(e.ctx, next)
	e.errIs(err, tokenstore.ErrNotFound, "the successor is revoked")
	_, err = e.s.Validate(e.ctx, other)
	e.errIs(err, tokenstore.ErrReused, "the grace is over: a rotated-away token")
	_, err = e.s.Get(e.ctx, nextInfo.ID)
	e.errIs(err, tokenstore.ErrNotFound)

	list, err := e.s.List(e.ctx, "user")
	require.NoError(t, err)
	assert.Empty(t, list)
	assert.Equal(t, int64(1), e.s.Stats().Tokens, "the stranger's token only")

	// An expired token of a family is deleted and counted, as RevokeSubject
	// counts it, or already gone (a backend that dropped it): never more.
	d, dInfo := e.issue("user", tokenstore.WithPolicy(tokenstore.Absolute(hour)))
	e.clock.Advance(2 * hour)
	n, err = e.s.RevokeFamily(e.ctx, dInfo.ID)
	require.NoError(t, err)
	assert.LessOrEqual(t, n, 1)
	_, err = e.s.Validate(e.ctx, d)
	e.errIs(err, tokenstore.ErrNotFound, "revoked, not merely expired")
}

// testTombstoneSwept: a tombstone lives until the old token's own deadline
// as of the rotation; after it the old token is unknown (ErrNotFound, as
// an expired token swept would be), revoking nothing.
func testTombstoneSwept(t *testing.T, open Opener) {
	e := newEnv(t, open, func(o *Config) { o.Policy = tokenstore.Sliding(hour, 10*hour) })
	t0 := e.clock.Now()
	a1, _ := e.issue("user")
	a2, _ := e.issue("user")
	e.clock.Advance(30 * time.Minute)
	b1, _ := e.rotate(a1)
	b2, _ := e.rotate(a2, tokenstore.WithGrace(time.Minute))
	// Neither was used: their deadlines were t0 + 1h; their successors'
	// are t0 + 1h30m.
	assert.Equal(t, int64(2), e.s.Stats().Tokens, "tombstones are not tokens")

	e.clock.Set(t0.Add(hour - time.Millisecond))
	_, err := e.s.Lookup(e.ctx, a1)
	e.errIs(err, tokenstore.ErrReused, "1ms before the old token's deadline")
	_, err = e.s.Lookup(e.ctx, b1)
	e.errIs(err, tokenstore.ErrNotFound, "its family is revoked")

	e.clock.Set(t0.Add(hour))
	before := e.s.Stats()
	_, err = e.s.Validate(e.ctx, a2)
	e.errIs(err, tokenstore.ErrNotFound, "at the old token's deadline, before a sweep")
	n, err := e.s.Sweep(e.ctx)
	require.NoError(t, err)
	assert.Zero(t, n, "tombstones are not counted as swept tokens")
	_, err = e.s.Validate(e.ctx, a2)
	e.errIs(err, tokenstore.ErrNotFound, "after the sweep")
	_, _, err = e.s.Rotate(e.ctx, a2, tokenstore.WithGrace(time.Minute))
	e.errIs(err, tokenstore.ErrNotFound, "Rotate after the sweep")
	after := e.s.Stats()
	assert.Equal(t, before.RejectedReused, after.RejectedReused, "no reuse")
	assert.Equal(t, before.Swept, after.Swept, "Stats.Swept counts tokens only")
	assert.Equal(t, before.Revoked, after.Revoked, "nothing revoked")
	_, err = e.s.Validate(e.ctx, b2)
	require.NoError(t, err, "the successor lives on")

	// Its successor's own expiry sweeps like any token's.
	e.clock.Set(t0.Add(3 * hour))
	n, err = e.s.Sweep(e.ctx)
	require.NoError(t, err)
	assert.Equal(t, 1, n, "the successor, expired")
	assert.Zero(t, e.s.Stats().Tokens)
}

// testInvalidGrace: a grace below zero or above MaxGrace is refused with
// ErrInvalidGrace, and nothing changes.
func testInvalidGrace(t *testing.T, open Opener) {
	e := newEnv(t, open, func(o *Config) { o.Policy = tokenstore.Absolute(hour) })
	token, info := e.issue("user")
	for _, d := range []time.Duration{-time.Millisecond, tokenstore.MaxGrace + time.Millisecond, 24 * hour} {
		before := e.s.Stats()
		next, _, err := e.s.Rotate(e.ctx, token, tokenstore.WithGrace(d))
		e.errIs(err, tokenstore.ErrInvalidGrace, "grace %v", d)
		assert.Empty(t, next)
		after := e.s.Stats()
		assert.Equal(t, before.Issued, after.Issued, "grace %v: nothing issued", d)
		assert.Equal(t, before.Revoked, after.Revoked, "grace %v: nothing revoked", d)
	}
	got, err := e.s.Validate(e.ctx, token)
	require.NoError(t, err, "the token is untouched")
	assert.Equal(t, info.ID, got.ID)
	assert.Equal(t, info.ID, got.FamilyID, "and not rotated")
	list, err := e.s.List(e.ctx, "user")
	require.NoError(t, err)
	assert.Len(t, list, 1)
	_, _, err = e.s.Rotate(e.ctx, "tks_nope", tokenstore.WithGrace(-1))
	require.Error(t, err, "a malformed token with a bad grace")
	assert.True(t, oneOf(err, tokenstore.ErrMalformed, tokenstore.ErrInvalidGrace), "either refusal: %v", err)
}

// testReuseLogRateLimited: each replay of a rotated-away token logged a
// Warn line, so a stolen token replayed in a loop filled the logs. Within
// a minute of a family's line (on Config.Now), its later reuses are
// counted, not logged, and the first line after that minute carries the
// count ("suppressed"); another family is logged apart; the line of a
// reuse that revoked tokens says how many ("revoked"); every reuse is
// still refused and counted in Stats; no line holds a token.
func testReuseLogRateLimited(t *testing.T, open Opener) {
	var logs logtest.Buffer
	e := newEnv(t, open, func(o *Config) { o.Logger = slog.New(slog.NewJSONHandler(&logs, nil)) })
	warns := func() []map[string]any {
		t.Helper()
		text := logs.Take()
		for _, s := range e.secrets.all() {
			require.NotContains(t, text, s, "a log line holds a token")
		}
		return logtest.Records(t, text, "WARN")
	}
	a, aInfo := e.issue("user")
	e.rotate(a)
	x, xInfo := e.issue("other")
	e.rotate(x)
	before := e.s.Stats().RejectedReused

	const replays = 20
	for i := range replays {
		e.clock.Advance(time.Second)
		_, err := e.s.Validate(e.ctx, a)
		e.errIs(err, tokenstore.ErrReused, "replay %d", i)
	}
	_, err := e.s.Validate(e.ctx, x)
	e.errIs(err, tokenstore.ErrReused)
	got := warns()
	require.Len(t, got, 2, "%d replays of a family within a minute: one line; another family's: its own", replays)
	assert.Contains(t, got[0]["msg"], "token reused after rotation")
	assert.Equal(t, aInfo.FamilyID.String(), got[0]["family"])
	assert.Equal(t, 1.0, got[0]["revoked"], "the first revoked the successor")
	assert.NotContains(t, got[0], "suppressed")
	assert.Equal(t, xInfo.FamilyID.String(), got[1]["family"])
	assert.Equal(t, before+replays+1, e.s.Stats().RejectedReused, "every reuse counted")

	e.clock.Advance(time.Minute - time.Duration(replays-1)*time.Second) // a minute after a's line
	_, err = e.s.Lookup(e.ctx, a)
	e.errIs(err, tokenstore.ErrReused)
	got = warns()
	require.Len(t, got, 1, "after the minute")
	assert.Contains(t, got[0]["msg"], "token reused after rotation")
	assert.Equal(t, aInfo.FamilyID.String(), got[0]["family"])
	assert.Equal(t, float64(replays-1), got[0]["suppressed"], "the replays not logged")
	assert.Equal(t, 0.0, got[0]["revoked"])
	_, _, err = e.s.Rotate(e.ctx, a)
	e.errIs(err, tokenstore.ErrReused)
	assert.Empty(t, warns(), "a new minute")
}
