package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tokenstore/tokenstore"
)

// rotateJSON runs rotate --json with token on stdin and decodes its answer.
func (e *env) rotateJSON(token string, args ...string) rotatedJSON {
	e.t.Helper()
	got := e.run(token, append([]string{"rotate", "--json"}, args...)...)
	require.Equal(e.t, exitOK, got.code, got.stderr)
	var r rotatedJSON
	require.NoError(e.t, json.Unmarshal([]byte(got.stdout), &r))
	return r
}

// TestRotate_Family: rotate keeps the family, and says so; inspect and
// list show it; the family's cap holds across rotations, unless
// --new-family starts a new one.
func TestRotate_Family(t *testing.T) {
	e := newEnv(t)
	first, info := e.issue("alice", tokenstore.WithPolicy(tokenstore.Absolute(30*day)))
	e.now = t0.Add(day)

	got := e.run(first, "rotate")
	require.Equal(t, exitOK, got.code, got.stderr)
	second := strings.TrimSpace(got.stdout)
	assert.Regexp(t, `^rotated token `+info.ID.String()+`: new token [0-9a-f-]{36} to "alice" in family `+info.ID.String()+`, absolute\(30d\), expires 2030-02-01T03:04:05Z \(in 29d\)\n$`, got.stderr,
		"an absolute token's successor expires when the family's first token does")
	assertNoToken(t, got.stderr, first, second)

	e.now = t0.Add(2 * day)
	r := e.rotateJSON(second)
	assert.Equal(t, info.ID.String(), r.FamilyID)
	assert.True(t, info.ExpiresAt.Equal(r.ExpiresAt), "the cap counts from the first token: %v", r.ExpiresAt)
	third := r.Token

	got = e.run(third, "inspect")
	require.Equal(t, exitOK, got.code, got.stderr)
	assert.Contains(t, got.stdout, "\nfamily     "+info.ID.String()+"\n")
	got = e.run("", "inspect", "--id", info.ID.String()) // rotated away: gone
	assert.Equal(t, exitFailed, got.code)
	got = e.run("", "list", "--subject", "alice")
	require.Equal(t, exitOK, got.code, got.stderr)
	assert.Regexp(t, `(?m)^`+r.ID+` +`+info.ID.String()+` +alice `, got.stdout)

	nf := e.rotateJSON(third, "--new-family")
	assert.Equal(t, nf.ID, nf.FamilyID, "the successor starts a family of its own")
	assert.Equal(t, r.ID, nf.Replaces)
	assert.True(t, e.now.Add(30*day).Equal(nf.ExpiresAt), "its cap counts from now: %v", nf.ExpiresAt)
	got = e.run(nf.Token, "inspect")
	assert.Contains(t, got.stdout, "\nfamily     "+nf.ID+" (its first token)\n")
}

// TestRotate_GraceAndReuse: within --grace, rotating the old token again
// prints the same successor; after it, the old token is reuse: exit 1,
// code "reused", and the family is revoked.
func TestRotate_GraceAndReuse(t *testing.T) {
	e := newEnv(t)
	old, info := e.issue("alice", tokenstore.WithPolicy(tokenstore.Sliding(time.Hour, day)))
	bystander, _ := e.issue("alice")

	r1 := e.rotateJSON(old, "--grace", "30s")
	e.now = e.now.Add(10 * time.Second)
	r2 := e.rotateJSON(old, "--grace", "30s")
	assert.Equal(t, r1.Token, r2.Token, "the same successor, for a client that lost the answer")
	assert.Equal(t, r1.ID, r2.ID)
	assert.Equal(t, info.ID.String(), r2.Replaces)

	e.now = e.now.Add(30 * time.Second)
	got := e.run(old, "rotate")
	assert.Equal(t, exitFailed, got.code)
	assert.Equal(t, "", got.stdout)
	assert.Contains(t, got.stderr, "invalid token: reused")
	assert.Contains(t, got.stderr, "every token of its family is now revoked")
	assertNoToken(t, got.stdout+got.stderr, old, r1.Token)

	got = e.run(old, "rotate", "--json")
	assert.Equal(t, exitFailed, got.code)
	b := decodeError(t, got.stdout)
	assert.Equal(t, "reused", b.Code, "presented again: still reuse")
	assert.Equal(t, exitFailed, b.ExitCode)

	_, err := e.lookup(r1.Token)
	assert.ErrorIs(t, err, tokenstore.ErrNotFound, "the successor went with its family")
	_, err = e.lookup(bystander)
	assert.NoError(t, err, "another family is untouched")

	got = e.run(old, "inspect", "--json")
	assert.Equal(t, exitFailed, got.code)
	assert.Equal(t, "reused", decodeError(t, got.stdout).Code)
}

// TestRotate_InspectReadOnly: inspect opens the file read-only, where a
// reuse revokes nothing, and says so; validate revokes the family.
func TestRotate_InspectReadOnly(t *testing.T) {
	e := newEnv(t)
	old, _ := e.issue("alice")
	r := e.rotateJSON(old)

	got := e.run(old, "inspect")
	assert.Equal(t, exitFailed, got.code)
	assert.Contains(t, got.stderr, "invalid token: reused")
	assert.Contains(t, got.stderr, "the file was opened read-only, so its family is not revoked yet")
	_, err := e.lookup(r.Token)
	require.NoError(t, err, "inspect revoked nothing")

	got = e.run(old, "validate")
	assert.Equal(t, exitFailed, got.code)
	assert.Contains(t, got.stderr, "every token of its family is now revoked")
	_, err = e.lookup(r.Token)
	assert.ErrorIs(t, err, tokenstore.ErrNotFound)
}

// TestRotate_NoGrace: without --grace, the old token presented again right
// after the rotation is reuse.
func TestRotate_NoGrace(t *testing.T) {
	e := newEnv(t)
	old, _ := e.issue("alice")
	r := e.rotateJSON(old)
	got := e.run(old, "validate")
	assert.Equal(t, exitFailed, got.code)
	assert.Contains(t, got.stderr, "invalid token: reused")
	_, err := e.lookup(r.Token)
	assert.ErrorIs(t, err, tokenstore.ErrNotFound)
}

// TestRevoke_Family: revoke --family revokes every live token of the
// family and nothing else; again, it revokes 0.
func TestRevoke_Family(t *testing.T) {
	e := newEnv(t)
	first, info := e.issue("alice")
	other, _ := e.issue("alice")
	r := e.rotateJSON(first)

	got := e.run("", "revoke", "--family", info.ID.String())
	require.Equal(t, exitOK, got.code, got.stderr)
	assert.Equal(t, "revoked 1 token\n", got.stdout)
	_, err := e.lookup(r.Token)
	assert.ErrorIs(t, err, tokenstore.ErrNotFound)
	_, err = e.lookup(other)
	assert.NoError(t, err)

	got = e.run("", "revoke", "--family", info.ID.String(), "--json")
	require.Equal(t, exitOK, got.code, got.stderr)
	assert.Equal(t, `{"revoked":0}`+"\n", got.stdout)

	got = e.run(first, "validate")
	assert.Equal(t, exitFailed, got.code)
	assert.Contains(t, got.stderr, "invalid token: reused", "a rotated-away token of a revoked family is still reuse")
}

// TestRevoke_FamilyGivenTokenID: a rotated token's own ID given to
// --family (the ID column beside FAMILY in list) is no family: it is
// refused, naming the family, and nothing is revoked; where it said
// "revoked 0 tokens" and exited 0 while the token lived on. The nil UUID
// names no family either.
func TestRevoke_FamilyGivenTokenID(t *testing.T) {
	e := newEnv(t)
	first, info := e.issue("alice")
	r := e.rotateJSON(first)

	for _, args := range [][]string{{"revoke", "--family", r.ID}, {"revoke", "--family", r.ID, "--json"}} {
		got := e.run("", args...)
		assert.Equal(t, exitUsage, got.code, got.stdout+got.stderr)
		assert.Contains(t, got.stderr, r.ID+" is the ID of a token of family "+info.ID.String()+", not a family ID")
		assertNoToken(t, got.stdout+got.stderr, r.Token)
	}
	_, err := e.lookup(r.Token)
	assert.NoError(t, err, "nothing was revoked")

	got := e.run("", "revoke", "--family", "00000000-0000-0000-0000-000000000000")
	assert.Equal(t, exitUsage, got.code)
	assert.Contains(t, got.stderr, "the nil UUID is no family ID")
}
