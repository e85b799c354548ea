package tokenstoretest

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tokenstore/tokenstore"
)

// testScopesRoundtrip: scopes given to Issue come back from every read,
// sorted and deduplicated, as the RFC 6749 string under ScopeKey.
func testScopesRoundtrip(t *testing.T, open Opener) {
	e := newEnv(t, open, nil)
	token, issued := e.issue("user",
		tokenstore.WithMetadata(map[string]string{"device": "laptop"}),
		tokenstore.WithScopes("write", "read", "write", "orders:read"))
	want := []string{"orders:read", "read", "write"}
	assert.Equal(t, want, issued.Scopes(), "Info returned by Issue")
	assert.Equal(t, map[string]string{"device": "laptop", tokenstore.ScopeKey: "orders:read read write"}, issued.Metadata)

	validated, err := e.s.Validate(e.ctx, token)
	require.NoError(t, err)
	looked, err := e.s.Lookup(e.ctx, token)
	require.NoError(t, err)
	got, err := e.s.Get(e.ctx, issued.ID)
	require.NoError(t, err)
	list, err := e.s.List(e.ctx, "user")
	require.NoError(t, err)
	require.Len(t, list, 1)
	for name, info := range map[string]tokenstore.Info{"Validate": validated, "Lookup": looked, "Get": got, "List": list[0]} {
		assert.Equal(t, want, info.Scopes(), name)
		assert.True(t, info.HasScopes("read", "write"), name)
		assert.False(t, info.HasScopes("read", "admin"), name)
		assert.Equal(t, "laptop", info.Metadata["device"], name)
	}

	plain, info := e.issue("user")
	assert.Nil(t, info.Scopes(), "a token issued without scopes")
	info, err = e.s.Validate(e.ctx, plain)
	require.NoError(t, err)
	assert.Nil(t, info.Scopes())
	assert.True(t, info.HasScopes(), "no scopes required")
	assert.False(t, info.HasScopes("read"))
}

// testScopesRotate: Rotate keeps the scopes (they are metadata).
func testScopesRotate(t *testing.T, open Opener) {
	e := newEnv(t, open, nil)
	token, _ := e.issue("user", tokenstore.WithScopes("read", "write"))
	rotated, info, err := e.s.Rotate(e.ctx, token)
	require.NoError(t, err)
	e.secrets.add(rotated)
	assert.Equal(t, []string{"read", "write"}, info.Scopes(), "Info returned by Rotate")
	info, err = e.s.Validate(e.ctx, rotated)
	require.NoError(t, err)
	assert.Equal(t, []string{"read", "write"}, info.Scopes(), "the new token, validated")
}

// testScopesInvalid: what RFC 6749 §3.3 does not allow is refused with
// ErrInvalidScope, and nothing is stored.
func testScopesInvalid(t *testing.T, open Opener) {
	e := newEnv(t, open, nil)
	bad := map[string][]tokenstore.IssueOption{
		"empty scope":                    {tokenstore.WithScopes("read", "")},
		"space in a scope":               {tokenstore.WithScopes("read write")},
		"double quote":                   {tokenstore.WithScopes(`a"b`)},
		"backslash":                      {tokenstore.WithScopes(`a\b`)},
		"control character":              {tokenstore.WithScopes("a\x01")},
		"tab":                            {tokenstore.WithScopes("a\tb")},
		"non-ASCII":                      {tokenstore.WithScopes("écrire")},
		"metadata by hand, double space": {tokenstore.WithMetadata(map[string]string{tokenstore.ScopeKey: "read  write"})},
		"metadata by hand, a space":      {tokenstore.WithMetadata(map[string]string{tokenstore.ScopeKey: " "})},
		"metadata by hand, trailing":     {tokenstore.WithMetadata(map[string]string{tokenstore.ScopeKey: "read "})},
		"bad scope after a good option":  {tokenstore.WithScopes("read"), tokenstore.WithScopes("bad\x7f")},
	}
	for name, opts := range bad {
		_, _, err := e.s.Issue(e.ctx, "user", opts...)
		e.errIs(err, tokenstore.ErrInvalidScope, name)
	}
	list, err := e.s.List(e.ctx, "user")
	require.NoError(t, err)
	assert.Empty(t, list, "nothing stored")
	assert.Zero(t, e.s.Stats().Issued)
}
