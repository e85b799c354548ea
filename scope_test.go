package tokenstore_test

import (
	"context"
	"slices"
	"strings"
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
	require.NoError(t, tokenstore.ValidateMetadata(map[string]string{"scope": ""}), "no scopes, as written by hand")
	for _, v := range []string{" ", " a", "a ", "a  b", "a\tb", "a,\"b\""} {
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
		{[]string{""}, false},                 // no empty scope
		{[]string{"read write"}, false},       // two scopes are not one
		{[]string{"orders:read read"}, false}, // not one scope, though both fields are there
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

// benchScopes are the scopes of the benchmark's tokens: a realistic
// handful, the required ones not first.
var benchScopes = []string{"orders:read", "orders:write", "profile", "read", "write"}

// BenchmarkInfo_HasScopes is the scope check on the Info that Validate
// returns: one and two scopes required, found and not. Floor, in the same
// run, is the metadata read that any scope check starts with, to read the
// others against on a busy machine.
func BenchmarkInfo_HasScopes(b *testing.B) {
	db := mustOpen(b, &tokenstore.Options{SweepInterval: -1})
	token, _, err := db.Issue(context.Background(), "user", tokenstore.WithScopes(benchScopes...))
	require.NoError(b, err)
	info, err := db.Validate(context.Background(), token)
	require.NoError(b, err)
	b.Run("Floor", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if info.Metadata[tokenstore.ScopeKey] == "" {
				b.Fatal("scopes lost")
			}
		}
	})
	for _, bb := range []struct {
		name     string
		required []string
		want     bool
	}{
		{"One", []string{"write"}, true},
		{"Two", []string{"orders:write", "write"}, true},
		{"Missing", []string{"admin"}, false},
	} {
		b.Run(bb.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if info.HasScopes(bb.required...) != bb.want {
					b.Fatal("wrong answer")
				}
			}
		})
	}
}

// BenchmarkValidateHasScopes is the hot path a handler runs per request,
// Validate then HasScopes, beside Validate alone in the same run: the
// difference is what the scope check adds.
func BenchmarkValidateHasScopes(b *testing.B) {
	const n = 1024
	db := mustOpen(b, &tokenstore.Options{SweepInterval: -1})
	ctx := context.Background()
	reqs := make([]tokenstore.IssueRequest, n)
	for i := range reqs {
		reqs[i] = tokenstore.IssueRequest{Subject: "user", Metadata: map[string]string{tokenstore.ScopeKey: "orders:read orders:write profile read write"}}
	}
	issued, err := db.IssueBatch(ctx, reqs)
	require.NoError(b, err)
	tokens := make([]string, n)
	for i, is := range issued {
		tokens[i] = is.Token
		_, err := db.Validate(ctx, is.Token) // warm the cache as a running server would be
		require.NoError(b, err)
	}
	required := []string{"orders:write", "write"}
	run := func(check bool) func(b *testing.B) {
		return func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				info, err := db.Validate(ctx, tokens[i%n])
				if err != nil {
					b.Fatal(err)
				}
				if check && !info.HasScopes(required...) {
					b.Fatal("scopes lost")
				}
				i++
			}
		}
	}
	b.Run("Validate", run(false))
	b.Run("ValidateHasScopes", run(true))
}

// FuzzInfo_HasScopes checks the allocation-free search against the
// obvious definition: s is one of the space-separated fields of the
// metadata value.
func FuzzInfo_HasScopes(f *testing.F) {
	for _, seed := range [][2]string{
		{"orders:read orders:write read write", "write"},
		{"orders:write", "write"},
		{"write:all write", "write"},
		{"a  b ", "b"},
		{" ", ""},
		{"aa a", "a"},
		{"aa", "a"}, // found by the fuzzer: a match inside a field is not a field
		{"xab ab", "b"},
		{"read", "read write"},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, granted, s string) {
		want := s != "" && slices.Contains(strings.Split(granted, " "), s)
		info := tokenstore.Info{Metadata: map[string]string{tokenstore.ScopeKey: granted}}
		if got := info.HasScopes(s); got != want {
			t.Fatalf("HasScopes(%q) on %q = %v, want %v", s, granted, got, want)
		}
		if got := slices.Contains(info.Scopes(), s) && s != ""; got != want {
			t.Fatalf("Scopes() on %q = %q: contains %q is %v, want %v", granted, info.Scopes(), s, got, want)
		}
	})
}
