package tokenstoretest

import (
	"hash/crc32"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tokenstore/tokenstore"
)

func testIssueRoundtrip(t *testing.T, open Opener) {
	e := newEnv(t, open, func(o *Config) { o.Policy = tokenstore.Absolute(2 * hour) })
	now := e.clock.Now()
	token, info := e.issue("user-42")

	assert.NotEqual(t, uuid.Nil, info.ID)
	assert.Equal(t, uuid.Version(7), info.ID.Version(), "IDs are UUIDv7")
	assert.Equal(t, "user-42", info.Subject)
	timeEq(t, now, info.CreatedAt, "CreatedAt")
	timeEq(t, now, info.LastUsedAt, "LastUsedAt before any use")
	timeEq(t, now.Add(2*hour), info.ExpiresAt, "ExpiresAt")
	assert.Equal(t, tokenstore.Absolute(2*hour), info.Policy)
	assert.Nil(t, info.Metadata, "no metadata: nil")

	later := e.clock.Advance(time.Minute)
	got, err := e.s.Lookup(e.ctx, token)
	require.NoError(t, err)
	sameToken(t, info, got)
	timeEq(t, now, got.LastUsedAt, "Lookup is not a use")

	got, err = e.s.Validate(e.ctx, token)
	require.NoError(t, err)
	sameToken(t, info, got)
	timeEq(t, later, got.LastUsedAt, "Validate is a use")
	timeEq(t, now.Add(2*hour), got.ExpiresAt, "an absolute deadline does not move")

	byID, err := e.s.Get(e.ctx, info.ID)
	require.NoError(t, err)
	sameToken(t, info, byID)
	timeEq(t, later, byID.LastUsedAt, "Get sees the latest use")

	list, err := e.s.List(e.ctx, "user-42")
	require.NoError(t, err)
	require.Len(t, list, 1)
	sameToken(t, info, list[0])
	timeEq(t, later, list[0].LastUsedAt, "List sees the latest use")

	// Two tokens of one subject are two tokens.
	token2, info2 := e.issue("user-42")
	assert.NotEqual(t, token, token2)
	assert.NotEqual(t, info.ID, info2.ID)
	got, err = e.s.Validate(e.ctx, token2)
	require.NoError(t, err)
	assert.Equal(t, info2.ID, got.ID)
}

func testDefaultPolicy(t *testing.T, open Opener) {
	e := newEnv(t, open, nil)
	now := e.clock.Now()
	_, info := e.issue("user")
	const day = 24 * time.Hour
	assert.Equal(t, tokenstore.Sliding(14*day, 30*day), info.Policy, "the zero Options.Policy means Sliding(14 days, 30 days)")
	timeEq(t, now.Add(14*day), info.ExpiresAt, "ExpiresAt")
}

func testWithPolicy(t *testing.T, open Opener) {
	e := newEnv(t, open, func(o *Config) { o.Policy = tokenstore.Absolute(hour) })
	now := e.clock.Now()
	def, defInfo := e.issue("user")
	own, ownInfo := e.issue("user", tokenstore.WithPolicy(tokenstore.Sliding(3*hour, 0)))
	zero, zeroInfo := e.issue("user", tokenstore.WithPolicy(tokenstore.Policy{}))

	assert.Equal(t, tokenstore.Absolute(hour), defInfo.Policy)
	assert.Equal(t, tokenstore.Sliding(3*hour, 0), ownInfo.Policy)
	assert.Equal(t, tokenstore.Absolute(hour), zeroInfo.Policy, "WithPolicy(zero Policy) means the store's default")
	timeEq(t, now.Add(hour), defInfo.ExpiresAt, "default ExpiresAt")
	timeEq(t, now.Add(3*hour), ownInfo.ExpiresAt, "own ExpiresAt")

	e.clock.Advance(2 * hour)
	_, err := e.s.Validate(e.ctx, def)
	e.errIs(err, tokenstore.ErrExpired)
	_, err = e.s.Validate(e.ctx, zero)
	e.errIs(err, tokenstore.ErrExpired)
	info, err := e.s.Validate(e.ctx, own)
	require.NoError(t, err, "the token's own policy decides")
	assert.Equal(t, tokenstore.Sliding(3*hour, 0), info.Policy)
	timeEq(t, e.clock.Now().Add(3*hour), info.ExpiresAt, "slid ExpiresAt")
}

func testInvalidPolicy(t *testing.T, open Opener) {
	e := newEnv(t, open, nil)
	tests := []struct {
		name string
		give tokenstore.Policy
	}{
		{"absolute zero", tokenstore.Absolute(0)},
		{"absolute negative", tokenstore.Absolute(-hour)},
		{"absolute below resolution", tokenstore.Absolute(time.Microsecond)},
		{"sliding zero idle", tokenstore.Sliding(0, hour)},
		{"sliding negative cap", tokenstore.Sliding(hour, -hour)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			token, _, err := e.s.Issue(e.ctx, "user", tokenstore.WithPolicy(tt.give))
			require.ErrorIs(t, err, tokenstore.ErrInvalidPolicy)
			assert.Empty(t, token)
		})
	}
	list, err := e.s.List(e.ctx, "user")
	require.NoError(t, err)
	assert.Empty(t, list, "nothing stored")
}

func testInvalidSubject(t *testing.T, open Opener) {
	e := newEnv(t, open, nil)
	tests := []struct {
		name string
		give string
	}{
		{"empty", ""},
		{"256 bytes", strings.Repeat("a", 256)},
		{"256 bytes multibyte", strings.Repeat("é", 128)},
		{"invalid UTF-8", "user-\xff"},
		{"truncated rune", "é"[:1]},
		{"NUL", "user\x00id"},
		{"newline", "user\n"},
		{"tab", "\tuser"},
		{"DEL", "user\x7f"},
		{"C1 control", "user\u0085"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			token, _, err := e.s.Issue(e.ctx, tt.give)
			require.ErrorIs(t, err, tokenstore.ErrInvalidSubject)
			assert.Empty(t, token)
			_, err = e.s.List(e.ctx, tt.give)
			assert.ErrorIs(t, err, tokenstore.ErrInvalidSubject, "List")
			_, err = e.s.RevokeSubject(e.ctx, tt.give)
			assert.ErrorIs(t, err, tokenstore.ErrInvalidSubject, "RevokeSubject")
		})
	}
	// The edges that are valid.
	for _, give := range []string{"a", strings.Repeat("a", 255), strings.Repeat("é", 127) + "a", "user@example.com", "用户-42", "a b"} {
		_, _, err := e.s.Issue(e.ctx, give)
		assert.NoError(t, err, "subject of %d bytes", len(give))
	}
	assert.Equal(t, int64(6), e.s.Stats().Tokens, "only the valid subjects stored a token")
}

func testTokenFormat(t *testing.T, open Opener) {
	for _, prefix := range []string{"", "myapp", "a1"} {
		t.Run("prefix="+prefix, func(t *testing.T) {
			e := newEnv(t, open, func(o *Config) { o.Prefix = prefix })
			want := prefix
			if want == "" {
				want = tokenstore.DefaultPrefix
			}
			f, err := tokenstore.NewFormat(prefix)
			require.NoError(t, err)
			seen := map[string]bool{}
			for range 50 {
				token, _ := e.issue("user")
				assert.True(t, strings.HasPrefix(token, want+"_"), "token starts with %q", want+"_")
				assert.Len(t, token, f.Len(), "every token has the same length")
				for _, r := range token[len(want)+1:] {
					if !(r < unicode.MaxASCII && (unicode.IsLetter(r) || unicode.IsDigit(r))) {
						t.Fatalf("body holds %q: not base62", r)
					}
				}
				_, err := f.Parse(token)
				assert.NoError(t, err, "tokens use the shared Format")
				assert.False(t, seen[token], "tokens are distinct")
				seen[token] = true
			}
		})
	}
}

func testMalformed(t *testing.T, open Opener) {
	e := newEnv(t, open, nil)
	token, _ := e.issue("user")
	other, err := tokenstore.NewFormat("abc")
	require.NoError(t, err)
	foreign, _ := other.Generate()
	longer, err := tokenstore.NewFormat("abcdef")
	require.NoError(t, err)
	foreignLong, _ := longer.Generate()
	e.secrets.add(foreign)
	e.secrets.add(foreignLong)

	body := len(tokenstore.DefaultPrefix) + 1
	tests := []struct {
		name string
		give string
	}{
		{"empty", ""},
		{"prefix only", tokenstore.DefaultPrefix + "_"},
		{"truncated by one", token[:len(token)-1]},
		{"truncated by half", token[:len(token)/2]},
		{"one more char", token + "0"},
		{"one char changed", changeChar(token, body+5)},
		{"checksum char changed", changeChar(token, len(token)-1)},
		{"first body char changed", changeChar(token, body)},
		{"case flipped char", flipCase(token, body)},
		{"upper-cased", strings.ToUpper(token)},
		{"prefix upper-cased", strings.ToUpper(token[:body]) + token[body:]},
		{"no underscore", strings.Replace(token, "_", "-", 1)},
		{"non-base62 byte", token[:body+3] + "!" + token[body+4:]},
		{"NUL byte", token[:body+3] + "\x00" + token[body+4:]},
		{"other prefix, same length", foreign},
		{"other prefix, other length", foreignLong},
		{"whitespace around", " " + token[1:]},
		{"1 MiB", strings.Repeat(token, 1<<20/len(token)+1)[:1<<20]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.NotEqual(t, token, tt.give)
			_, err := e.s.Validate(e.ctx, tt.give)
			e.errIs(err, tokenstore.ErrMalformed, "Validate")
			_, err = e.s.Lookup(e.ctx, tt.give)
			e.errIs(err, tokenstore.ErrMalformed, "Lookup")
			e.errIs(e.s.Revoke(e.ctx, tt.give), tokenstore.ErrMalformed, "Revoke")
			_, _, err = e.s.Rotate(e.ctx, tt.give)
			e.errIs(err, tokenstore.ErrMalformed, "Rotate")
		})
	}
	_, err = e.s.Validate(e.ctx, token)
	require.NoError(t, err, "the real token still works")
	assert.Equal(t, int64(1), e.s.Stats().Tokens, "a malformed Rotate stored nothing")
}

// testOtherVersion: a token's text with the checksum of the other token
// version (CRC32, or CRC32 XOR 0x9e3779b9: tokenstore.Format.Parse) is a
// well-formed token, and another one: its hash is another key, so every
// backend answers ErrNotFound and leaves the real token as it was. A
// backend that found the record by the token's text, or by the time it
// carries, would answer for the real token.
func testOtherVersion(t *testing.T, open Opener) {
	e := newEnv(t, open, nil)
	token, _ := e.issue("user")
	var recast string
	for _, x := range []uint32{0, 0x9e3779b9} {
		if s := withChecksum(token, x); s != token {
			recast = s
		}
	}
	require.NotEmpty(t, recast)
	e.secrets.add(recast)
	_, err := e.s.Validate(e.ctx, recast)
	e.errIs(err, tokenstore.ErrNotFound, "Validate")
	_, err = e.s.Lookup(e.ctx, recast)
	e.errIs(err, tokenstore.ErrNotFound, "Lookup")
	_, _, err = e.s.Rotate(e.ctx, recast)
	e.errIs(err, tokenstore.ErrNotFound, "Rotate")
	e.errIs(e.s.Revoke(e.ctx, recast), tokenstore.ErrNotFound, "Revoke")
	_, err = e.s.Validate(e.ctx, token)
	require.NoError(t, err, "the real token still works")
	assert.Equal(t, int64(1), e.s.Stats().Tokens)
}

// withChecksum returns token with its last 6 characters replaced by the
// base62 checksum CRC32(the rest) XOR x.
func withChecksum(token string, x uint32) string {
	const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	b := []byte(token)
	n := len(b) - 6
	c := crc32.ChecksumIEEE(b[:n]) ^ x
	for i := len(b) - 1; i >= n; i-- {
		b[i] = base62[c%62]
		c /= 62
	}
	return string(b)
}

// changeChar replaces token[i] by another base62 character.
func changeChar(token string, i int) string {
	c := byte('A')
	if token[i] == 'A' {
		c = 'B'
	}
	return token[:i] + string(c) + token[i+1:]
}

// flipCase flips the case of the first letter of token at or after i.
func flipCase(token string, i int) string {
	b := []byte(token)
	for ; i < len(b); i++ {
		switch c := b[i]; {
		case 'a' <= c && c <= 'z':
			b[i] = c - 'a' + 'A'
			return string(b)
		case 'A' <= c && c <= 'Z':
			b[i] = c - 'A' + 'a'
			return string(b)
		}
	}
	panic("no letter in token")
}

func testUnknownToken(t *testing.T, open Opener) {
	e := newEnv(t, open, func(o *Config) { o.Prefix = "zz" })
	token, _ := e.issue("user")

	f, err := tokenstore.NewFormat("zz")
	require.NoError(t, err)
	never, _ := f.Generate()
	e.secrets.add(never)

	other := newEnv(t, open, func(o *Config) { o.Prefix = "zz" })
	elsewhere, _ := other.issue("user")
	e.secrets.add(elsewhere)

	for name, give := range map[string]string{"never issued": never, "issued by another store": elsewhere} {
		t.Run(name, func(t *testing.T) {
			_, err := e.s.Validate(e.ctx, give)
			e.errIs(err, tokenstore.ErrNotFound, "Validate")
			_, err = e.s.Lookup(e.ctx, give)
			e.errIs(err, tokenstore.ErrNotFound, "Lookup")
			e.errIs(e.s.Revoke(e.ctx, give), tokenstore.ErrNotFound, "Revoke")
			_, _, err = e.s.Rotate(e.ctx, give)
			e.errIs(err, tokenstore.ErrNotFound, "Rotate")
		})
	}
	_, err = e.s.Get(e.ctx, uuid.Must(uuid.NewV7()))
	e.errIs(err, tokenstore.ErrNotFound, "Get of an unknown ID")
	e.errIs(e.s.RevokeID(e.ctx, uuid.Must(uuid.NewV7())), tokenstore.ErrNotFound, "RevokeID of an unknown ID")
	e.errIs(e.s.RevokeID(e.ctx, uuid.Nil), tokenstore.ErrNotFound, "RevokeID of the nil UUID")

	_, err = e.s.Validate(e.ctx, token)
	require.NoError(t, err)
	_, err = other.s.Validate(other.ctx, elsewhere)
	require.NoError(t, err, "the other store is unaffected")
}

func testMetadataRoundtrip(t *testing.T, open Opener) {
	e := newEnv(t, open, func(o *Config) { o.Policy = tokenstore.Sliding(hour, 0) })
	meta := map[string]string{
		"scope":  "read write",
		"device": "Ana's phone 📱",
		"":       "empty key",
		"empty":  "",
		"binary": "\x00\xff\n",
	}
	token, info := e.issue("user", tokenstore.WithMetadata(meta))
	assert.Equal(t, meta, info.Metadata, "Issue")

	got, err := e.s.Validate(e.ctx, token)
	require.NoError(t, err)
	assert.Equal(t, meta, got.Metadata, "Validate")
	got, err = e.s.Lookup(e.ctx, token)
	require.NoError(t, err)
	assert.Equal(t, meta, got.Metadata, "Lookup")
	got, err = e.s.Get(e.ctx, info.ID)
	require.NoError(t, err)
	assert.Equal(t, meta, got.Metadata, "Get")
	list, err := e.s.List(e.ctx, "user")
	require.NoError(t, err)
	require.Len(t, list, 1)
	assert.Equal(t, meta, list[0].Metadata, "List")

	_, empty := e.issue("user", tokenstore.WithMetadata(map[string]string{}))
	assert.Empty(t, empty.Metadata)
	_, info = e.issue("user", tokenstore.WithMetadata(map[string]string{"a": "1"}), tokenstore.WithMetadata(nil))
	assert.Empty(t, info.Metadata, "the last WithMetadata wins")
}

func testMetadataIsCopied(t *testing.T, open Opener) {
	e := newEnv(t, open, nil)
	meta := map[string]string{"scope": "read"}
	token, info := e.issue("user", tokenstore.WithMetadata(meta))
	want := map[string]string{"scope": "read"}

	meta["scope"] = "admin" // the caller's map, after Issue
	meta["extra"] = "x"
	info.Metadata["scope"] = "admin" // Issue's result
	got, err := e.s.Validate(e.ctx, token)
	require.NoError(t, err)
	assert.Equal(t, want, got.Metadata)

	got.Metadata["scope"] = "admin" // Validate's result
	got, err = e.s.Lookup(e.ctx, token)
	require.NoError(t, err)
	assert.Equal(t, want, got.Metadata)

	got.Metadata["scope"] = "admin" // Lookup's result
	got, err = e.s.Get(e.ctx, got.ID)
	require.NoError(t, err)
	assert.Equal(t, want, got.Metadata)

	got.Metadata["scope"] = "admin" // Get's result
	list, err := e.s.List(e.ctx, "user")
	require.NoError(t, err)
	require.Len(t, list, 1)
	assert.Equal(t, want, list[0].Metadata)

	list[0].Metadata["scope"] = "admin" // List's result
	got, err = e.s.Validate(e.ctx, token)
	require.NoError(t, err)
	assert.Equal(t, want, got.Metadata)

	// Options themselves copy: an option built before a change keeps the old map.
	m := map[string]string{"scope": "read"}
	opt := tokenstore.WithMetadata(m)
	m["scope"] = "admin"
	_, info = e.issue("user", opt)
	assert.Equal(t, want, info.Metadata)
}

func testMetadataTooLarge(t *testing.T, open Opener) {
	e := newEnv(t, open, nil)
	// The largest single value that fits, found with the shared check.
	n := 0
	for tokenstore.ValidateMetadata(map[string]string{"k": strings.Repeat("v", n+1)}) == nil {
		n++
	}
	require.Greater(t, n, tokenstore.MaxMetadataSize-16)
	require.LessOrEqual(t, n, tokenstore.MaxMetadataSize)

	fits := map[string]string{"k": strings.Repeat("v", n)}
	token, info := e.issue("user", tokenstore.WithMetadata(fits))
	assert.Equal(t, fits, info.Metadata)
	got, err := e.s.Lookup(e.ctx, token)
	require.NoError(t, err)
	assert.Equal(t, fits, got.Metadata, "metadata at the limit survives")

	tests := []struct {
		name string
		give map[string]string
	}{
		{"one byte over", map[string]string{"k": strings.Repeat("v", n+1)}},
		{"huge value", map[string]string{"k": strings.Repeat("v", 1<<20)}},
		{"huge key", map[string]string{strings.Repeat("k", 5000): ""}},
		{"many pairs", manyPairs(1000)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := e.s.Stats()
			token, _, err := e.s.Issue(e.ctx, "user", tokenstore.WithMetadata(tt.give))
			e.errIs(err, tokenstore.ErrMetadataTooLarge)
			assert.Empty(t, token)
			after := e.s.Stats()
			assert.Equal(t, before.Tokens, after.Tokens, "nothing stored")
			assert.Equal(t, before.Issued, after.Issued, "nothing issued")
		})
	}
	list, err := e.s.List(e.ctx, "user")
	require.NoError(t, err)
	assert.Len(t, list, 1, "only the token that fitted")
}

func manyPairs(n int) map[string]string {
	m := make(map[string]string, n)
	for i := range n {
		m[strings.Repeat("k", i%7)+uuid.NewString()] = "v"
	}
	return m
}
