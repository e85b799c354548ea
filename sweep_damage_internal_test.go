package tokenstore

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A damaged ids entry of one expired token costs the sweep only that
// token: the others due are swept, the damage is reported (ErrCorrupt,
// naming the token), and the next sweeps are not stopped by it.
func TestDB_Sweep_DamagedIDsEntryCostsOnlyItself(t *testing.T) {
	ctx := context.Background()
	db, now := openOnClock(t, Options{SweepInterval: -1})
	issued := issueToUser(t, db, 10, Absolute(time.Hour))
	bad := issued[4].Info.ID
	damageIDEntry(t, db, mustParse(t, db, issued[4].Token)) // its last use: the checksum tells
	now.Add(2 * time.Hour.Milliseconds())
	n, err := db.Sweep(ctx)
	require.ErrorIs(t, err, ErrCorrupt)
	assert.Contains(t, err.Error(), bad.String())
	assert.Equal(t, 9, n, "every other expired token")
	n, err = db.Sweep(ctx)
	assert.Zero(t, n)
	require.NoError(t, err, "reported once")
	assert.Equal(t, int64(1), db.Stats().Tokens)
	problems, err := db.Check(ctx)
	require.NoError(t, err)
	require.NotEmpty(t, problems)
	assert.Contains(t, problems[0], bad.String(), "Check names it")
	_, err = db.Validate(ctx, issued[4].Token)
	require.Error(t, err, "never valid")
	require.NoError(t, db.Revoke(ctx, issued[4].Token), "the repair")
	problems, err = db.Check(ctx)
	require.NoError(t, err)
	require.Empty(t, problems)
	assert.Zero(t, db.Stats().Tokens)
}
