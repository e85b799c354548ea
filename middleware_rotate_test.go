package tokenstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tokenstore/tokenstore"
)

// TestMiddleware_RotationReuse runs the refresh pattern end to end on a
// real file and a real server: a client rotates its token with a grace,
// the old token works within the grace, and once the grace has passed on
// the store's clock, presenting it again is refused as reuse and takes
// the successor down with it (its family is revoked).
func TestMiddleware_RotationReuse(t *testing.T) {
	e := newMWEnv(t, tokenstore.Sliding(time.Hour, 24*time.Hour))
	old, _ := e.issue(t, "alice")
	bystander, _ := e.issue(t, "alice") // another family of the same subject
	srv := e.serve(t, e.db)

	next, info, err := e.db.Rotate(context.Background(), old, tokenstore.WithGrace(30*time.Second))
	require.NoError(t, err)
	e.remember(next)

	r := e.get(t, srv, "/", mwBearer(old))
	assert.Equal(t, 200, r.status, "within the grace the old token still works: body %q", r.body)

	e.clock.Advance(31 * time.Second)
	r = e.get(t, srv, "/", mwBearer(old))
	mwAssertRefused(t, r, 401, mwReusedChallenge, "invalid_token", mwReusedDescription)

	r = e.get(t, srv, "/", mwBearer(next))
	mwAssertRefused(t, r, 401, `Bearer realm="test", error="invalid_token", error_description="the token is not valid"`,
		"invalid_token", "the token is not valid")
	_, err = e.db.Get(context.Background(), info.ID)
	assert.ErrorIs(t, err, tokenstore.ErrNotFound, "the successor was revoked with its family")

	assert.Equal(t, 200, e.get(t, srv, "/", mwBearer(bystander)).status, "another family of the subject is untouched")
	assert.Contains(t, e.logs.String(), "token reused after rotation; family revoked", "the store logs the event")
}
