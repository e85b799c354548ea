package admin_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tokenstore/tokenstore"
	"github.com/tokenstore/tokenstore/admin"
)

// sameInfo compares Infos across a JSON round trip (times lose their
// monotonic reading and location).
func sameInfo(t *testing.T, want, got tokenstore.Info) {
	t.Helper()
	assert.Equal(t, want.ID, got.ID)
	assert.Equal(t, want.Subject, got.Subject)
	assert.True(t, want.CreatedAt.Equal(got.CreatedAt), "created %v, got %v", want.CreatedAt, got.CreatedAt)
	assert.True(t, want.LastUsedAt.Equal(got.LastUsedAt), "last used %v, got %v", want.LastUsedAt, got.LastUsedAt)
	assert.True(t, want.ExpiresAt.Equal(got.ExpiresAt), "expires %v, got %v", want.ExpiresAt, got.ExpiresAt)
	assert.Equal(t, want.Policy, got.Policy)
	assert.Equal(t, want.Metadata, got.Metadata)
	assert.Equal(t, want.FamilyID, got.FamilyID)
}

// TestClient: the Client answers as the store behind the server does,
// with the same sentinel errors.
func TestClient(t *testing.T) {
	eachBackend(t, func(t *testing.T, open func(*testing.T, func() time.Time) tokenstore.Store) {
		e := newEnv(t, open, nil)
		ctx := context.Background()
		c := &admin.Client{BaseURL: e.srv.URL + "/admin/", Token: e.admin}

		tok, info, err := c.Issue(ctx, "team/alice", tokenstore.WithPolicy(tokenstore.Sliding(time.Hour, 24*time.Hour)),
			tokenstore.WithMetadata(map[string]string{"device": "laptop"}))
		require.NoError(t, err)
		e.tokens = append(e.tokens, tok)
		stored, err := e.store.Get(ctx, info.ID)
		require.NoError(t, err)
		sameInfo(t, stored, info)
		e.clock.Advance(time.Minute)
		require.Equal(t, 200, e.hello(tok))
		other, otherInfo := e.issueInfo("team/alice", tokenstore.WithPolicy(tokenstore.Absolute(10*time.Minute)))

		want, err := e.store.List(ctx, "team/alice")
		require.NoError(t, err)
		got, err := c.List(ctx, "team/alice")
		require.NoError(t, err)
		require.Len(t, got, len(want))
		for i := range want {
			sameInfo(t, want[i], got[i])
		}
		g, err := c.Get(ctx, info.ID)
		require.NoError(t, err)
		sameInfo(t, want[0], g)
		l, err := c.Lookup(ctx, tok)
		require.NoError(t, err)
		sameInfo(t, want[0], l)

		exp, err := c.Expiring(ctx, 30*time.Minute)
		require.NoError(t, err)
		require.Len(t, exp, 1)
		assert.Equal(t, otherInfo.ID, exp[0].ID)
		st, err := c.Stats(ctx)
		require.NoError(t, err)
		assert.EqualValues(t, 3, st.Tokens.Total)

		_, err = c.Get(ctx, uuid.New())
		assert.ErrorIs(t, err, tokenstore.ErrNotFound)
		_, err = c.Lookup(ctx, "tks_garbage")
		assert.ErrorIs(t, err, tokenstore.ErrMalformed)
		_, _, err = c.Issue(ctx, "")
		var apiErr *admin.APIError
		require.ErrorAs(t, err, &apiErr)
		assert.Equal(t, "invalid_request", apiErr.Code)

		// Expired, not deleted: Get gives the Info and ErrExpired, as DB.Get.
		e.clock.Advance(10 * time.Minute)
		g, err = c.Get(ctx, otherInfo.ID)
		assert.ErrorIs(t, err, tokenstore.ErrExpired)
		assert.Equal(t, otherInfo.ID, g.ID)
		_, err = c.Lookup(ctx, other)
		assert.ErrorIs(t, err, tokenstore.ErrExpired)
		assert.NotContains(t, err.Error(), other)

		require.NoError(t, c.Revoke(ctx, tok))
		assert.ErrorIs(t, c.Revoke(ctx, tok), tokenstore.ErrNotFound)
		assert.Equal(t, 401, e.hello(tok))
		assert.ErrorIs(t, c.RevokeID(ctx, info.ID), tokenstore.ErrNotFound)
		n, err := c.RevokeSubject(ctx, "team/alice")
		require.NoError(t, err)
		assert.Equal(t, 1, n, "the expired one")

		user := e.issue("bob")
		for _, tt := range []struct {
			token string
			want  error
		}{{"", admin.ErrUnauthenticated}, {"tks_nope", admin.ErrUnauthenticated}, {user, admin.ErrForbidden}} {
			bad := &admin.Client{BaseURL: c.BaseURL, Token: tt.token}
			_, err := bad.List(ctx, "bob")
			assert.ErrorIs(t, err, tt.want)
			if tt.token != "" {
				assert.NotContains(t, err.Error(), tt.token)
			}
		}
		_, err = (&admin.Client{BaseURL: e.srv.URL + "/elsewhere", Token: e.admin}).List(ctx, "bob")
		require.ErrorAs(t, err, &apiErr)
		assert.Equal(t, 404, apiErr.Status)
		assert.NotErrorIs(t, err, tokenstore.ErrNotFound, "a wrong URL is not a missing token")
	})
}
