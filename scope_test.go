package tokenstore_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tokenstore/tokenstore"
)

func TestWithScopes_Options(t *testing.T) {
	tests := []struct {
		name string
		opts []tokenstore.IssueOption
		want map[string]string
	}{
		{"sorted and deduplicated", []tokenstore.IssueOption{tokenstore.WithScopes("b", "a", "b")},
			map[string]string{"scope": "a b"}},
		{"after WithMetadata: added to its map",
			[]tokenstore.IssueOption{tokenstore.WithMetadata(map[string]string{"device": "d"}), tokenstore.WithScopes("a")},
			map[string]string{"device": "d", "scope": "a"}},
		{"before WithMetadata: replaced with the map",
			[]tokenstore.IssueOption{tokenstore.WithScopes("a"), tokenstore.WithMetadata(map[string]string{"device": "d"})},
			map[string]string{"device": "d"}},
		{"a later WithScopes replaces", []tokenstore.IssueOption{tokenstore.WithScopes("a"), tokenstore.WithScopes("b")},
			map[string]string{"scope": "b"}},
		{"no scopes removes them",
			[]tokenstore.IssueOption{tokenstore.WithMetadata(map[string]string{"device": "d", "scope": "x"}), tokenstore.WithScopes()},
			map[string]string{"device": "d"}},
		{"none at all", []tokenstore.IssueOption{tokenstore.WithScopes()}, nil},
		{"every character RFC 6749 allows", []tokenstore.IssueOption{tokenstore.WithScopes("!#$%&'()*+,-./09:;<=>?@AZ[]^_`az{|}~")},
			map[string]string{"scope": "!#$%&'()*+,-./09:;<=>?@AZ[]^_`az{|}~"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := tokenstore.NewIssueParams(tt.opts...)
			require.NoError(t, err)
			assert.Equal(t, tt.want, p.Metadata)
		})
	}
}

func TestWithScopes_OptionReused(t *testing.T) {
	// One option value used for two Issue calls gives each its own map.
	opt := tokenstore.WithScopes("a")
	p1, err := tokenstore.NewIssueParams(opt)
	require.NoError(t, err)
	p1.Metadata["scope"] = "changed"
	p2, err := tokenstore.NewIssueParams(opt)
	require.NoError(t, err)
	assert.Equal(t, "a", p2.Metadata["scope"])
}

func TestValidateScopes(t *testing.T) {
	require.NoError(t, tokenstore.ValidateScopes())
	require.NoError(t, tokenstore.ValidateScopes("read", "orders:write", "https://example.com/api"))
	tests := map[string]string{
		"":     "tokenstore: invalid scope: empty",
		"a b":  `tokenstore: invalid scope: "a b" holds a space (one scope per argument), which RFC 6749 §3.3 does not allow in a scope`,
		`a"`:   `tokenstore: invalid scope: "a\"" holds '"', which RFC 6749 §3.3 does not allow in a scope`,
		`a\`:   `tokenstore: invalid scope: "a\\" holds '\\', which RFC 6749 §3.3 does not allow in a scope`,
		"a\n":  `tokenstore: invalid scope: "a\n" holds control character 0x0a, which RFC 6749 §3.3 does not allow in a scope`,
		"\x7f": `tokenstore: invalid scope: "\x7f" holds control character 0x7f, which RFC 6749 §3.3 does not allow in a scope`,
		"café": `tokenstore: invalid scope: "café" holds a non-ASCII character, which RFC 6749 §3.3 does not allow in a scope`,
	}
	for give, want := range tests {
		err := tokenstore.ValidateScopes("ok", give)
		require.ErrorIs(t, err, tokenstore.ErrInvalidScope, "%q", give)
		assert.EqualError(t, err, want)
	}
}

func TestValidateMetadata_Scope(t *testing.T) {
	require.NoError(t, tokenstore.ValidateMetadata(map[string]string{"scope": "a b"}))
	require.NoError(t, tokenstore.ValidateMetadata(map[string]string{"scopes": "not checked: another key"}))
	for _, v := range []string{"", " a", "a ", "a  b", "a\tb", "a,\"b\""} {
		assert.ErrorIs(t, tokenstore.ValidateMetadata(map[string]string{"scope": v}), tokenstore.ErrInvalidScope, "%q", v)
	}
}

func TestInfo_Scopes(t *testing.T) {
	tests := []struct {
		give string // Metadata["scope"], as written by hand before WithScopes existed
		want []string
	}{
		{"", nil},
		{" ", nil},
		{"b a b", []string{"a", "b"}},
		{"  read   write ", []string{"read", "write"}},
		{"read,write", []string{"read,write"}}, // one scope-token: commas are allowed in one
	}
	for _, tt := range tests {
		info := tokenstore.Info{Metadata: map[string]string{"scope": tt.give}}
		assert.Equal(t, tt.want, info.Scopes(), "%q", tt.give)
	}
	assert.Nil(t, tokenstore.Info{}.Scopes())
}

func TestInfo_HasScopes(t *testing.T) {
	info := tokenstore.Info{Metadata: map[string]string{"scope": "orders:read read  write"}}
	tests := []struct {
		give []string
		want bool
	}{
		{nil, true},
		{[]string{"read"}, true},
		{[]string{"write", "read"}, true},
		{[]string{"orders:read", "write"}, true},
		{[]string{"orders"}, false}, // no prefix matching
		{[]string{"ead"}, false},    // no suffix matching
		{[]string{"Read"}, false},   // case-sensitive (RFC 6749 §3.3)
		{[]string{"read", "admin"}, false},
		{[]string{""}, false},           // no empty scope
		{[]string{"read write"}, false}, // two scopes are not one
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, info.HasScopes(tt.give...), "%q", tt.give)
	}
	assert.True(t, tokenstore.Info{}.HasScopes())
	assert.False(t, tokenstore.Info{}.HasScopes("read"))

	required := []string{"write", "orders:read"}
	allocs := testing.AllocsPerRun(100, func() {
		if !info.HasScopes(required...) {
			t.Fatal("scopes lost")
		}
	})
	assert.Zero(t, allocs, "HasScopes allocates")
}

func TestDB_IssueBatch_InvalidScope(t *testing.T) {
	db := mustOpen(t, nil)
	_, err := db.IssueBatch(context.Background(), []tokenstore.IssueRequest{
		{Subject: "a", Metadata: map[string]string{"scope": "read"}},
		{Subject: "b", Metadata: map[string]string{"scope": "read  write"}},
	})
	require.ErrorIs(t, err, tokenstore.ErrInvalidScope)
	assert.Zero(t, db.Stats().Tokens, "nothing stored")
}
