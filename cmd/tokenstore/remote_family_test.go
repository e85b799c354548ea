package main

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tokenstore/tokenstore"
)

// TestRemote_Family: through a running application's admin API, inspect
// shows a rotated token's family, revoke --family revokes it, and a
// rotated-away token presented again is "reused", as on the file. (On a
// file, so that the same command can then run on it: admin's tests run
// families on Redis too.)
func TestRemote_Family(t *testing.T) {
	c := newCLI(t)
	db := openFile(t, c.path("tokens.db"))
	app := serve(t, c, db)
	ctx := context.Background()
	first, firstInfo := app.issue("alice")
	_, next, err := db.Rotate(ctx, first)
	require.NoError(t, err)
	old, _ := app.issue("bob")
	_, _, err = db.Rotate(ctx, old)
	require.NoError(t, err)

	got := c.run("", app.args("inspect", "--id", next.ID.String())...)
	require.Equal(t, exitOK, got.code, got.stderr)
	assert.Contains(t, got.stdout, "\nfamily     "+firstInfo.ID.String()+"\n")

	got = c.run("", app.args("revoke", "--family", firstInfo.ID.String(), "--json")...)
	require.Equal(t, exitOK, got.code, got.stderr)
	assert.Equal(t, `{"revoked":1}`+"\n", got.stdout)
	_, err = db.Get(ctx, next.ID)
	assert.ErrorIs(t, err, tokenstore.ErrNotFound)
	got = c.run("", app.args("revoke", "--family", firstInfo.ID.String())...)
	require.Equal(t, exitOK, got.code, got.stderr)
	assert.Equal(t, "revoked 0 tokens\n", got.stdout)

	remote := c.run(old+"\n", app.args("inspect", "--json")...)
	assert.Equal(t, exitFailed, remote.code)
	assert.Equal(t, "reused", decodeError(t, remote.stdout).Code)
	assertNoToken(t, remote.stdout+remote.stderr, old)

	app.srv.Close()
	require.NoError(t, db.Close())
	// On the file, inspect opens it read-only: the same answer, but the
	// family is not revoked (the application's Lookup revoked it).
	local := c.run(old+"\n", "--db", "tokens.db", "inspect", "--json")
	assert.Equal(t, remote.code, local.code)
	assert.Equal(t, "reused", decodeError(t, local.stdout).Code)
	assert.Contains(t, remote.stderr, "every token of its family is now revoked")
	assert.Contains(t, local.stderr, "the file was opened read-only, so its family is not revoked yet")
}

// TestRemote_FamilyGivenTokenID: --url answers a token ID given to
// --family as the file does: refused, naming the family, nothing revoked.
func TestRemote_FamilyGivenTokenID(t *testing.T) {
	c := newCLI(t)
	db := openFile(t, c.path("tokens.db"))
	app := serve(t, c, db)
	ctx := context.Background()
	first, firstInfo := app.issue("alice")
	_, next, err := db.Rotate(ctx, first)
	require.NoError(t, err)

	got := c.run("", app.args("revoke", "--family", next.ID.String(), "--json")...)
	assert.Equal(t, exitUsage, got.code, got.stdout+got.stderr)
	assert.Equal(t, "usage", decodeError(t, got.stdout).Code)
	assert.Contains(t, got.stderr, next.ID.String()+" is the ID of a token of family "+firstInfo.ID.String()+", not a family ID")
	_, err = db.Get(ctx, next.ID)
	assert.NoError(t, err, "nothing was revoked")
}
