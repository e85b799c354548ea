package redisstore_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tokenstore/tokenstore"
	"github.com/tokenstore/tokenstore/redisstore"
)

// TestWrongTypeKeys: a key of the store's key space holding another Redis
// type than its kind's (damage, or another program's key) made every
// script that met it fail with Redis's WRONGTYPE, raw: for a subject's
// record, List, RevokeSubject and Issue under a limit of the subject, and
// every Sweep, which never got past it. Every call that meets one now
// answers ErrCorrupt naming the kind of key, and the key costs only
// itself: other tokens validate, Sweep deletes the rest of the expired
// tokens. (Family keys of another type stand for no token:
// TestFamily_DamagedKeysCostOnlyThemselves; tombstones:
// TestWrongTypeKeys_Tombstone.)
func TestWrongTypeKeys(t *testing.T) {
	ctx := context.Background()
	type env struct {
		s            *redisstore.Store
		prefix       string
		target, mate string // tokens of "user"; target's keys are damaged
		tInfo        tokenstore.Info
		other        string // a token of "other"
		clk          *clock
	}
	tests := []struct {
		name   string
		kind   string // what the message names
		damage func(e *env) error
		check  func(t *testing.T, e *env, corrupt func(error, string))
	}{
		{
			name: "record is a string", kind: "record",
			damage: func(e *env) error {
				return newClient(t).Set(ctx, recordKey(e.prefix, e.target), "x", 0).Err()
			},
			check: func(t *testing.T, e *env, corrupt func(error, string)) {
				targetCorrupt(t, e.s, e.target, e.tInfo, corrupt)
			},
		},
		{
			name: "ID key is a hash", kind: "ID key",
			damage: func(e *env) error {
				k := e.prefix + "i:" + e.tInfo.ID.String()
				return replaceKey(t, k, func(c *redis.Client) error { return c.HSet(ctx, k, "a", "b").Err() })
			},
			check: func(t *testing.T, e *env, corrupt func(error, string)) {
				// RevokeID only reads the ID key before it answers: it
				// writes nothing that the calls after it would see.
				corrupt(e.s.RevokeID(ctx, e.tInfo.ID), "RevokeID")
				targetCorrupt(t, e.s, e.target, e.tInfo, corrupt)
			},
		},
		{
			name: "subject index is a string", kind: "subject index",
			damage: func(e *env) error {
				k := e.prefix + "s:user"
				return replaceKey(t, k, func(c *redis.Client) error { return c.Set(ctx, k, "x", 0).Err() })
			},
			check: func(t *testing.T, e *env, corrupt func(error, string)) {
				_, err := e.s.Validate(ctx, e.target)
				corrupt(err, "Validate")
				_, _, err = e.s.Rotate(ctx, e.target)
				corrupt(err, "Rotate")
				_, err = e.s.List(ctx, "user")
				corrupt(err, "List")
				_, _, err = e.s.Issue(ctx, "user")
				corrupt(err, "Issue")
				_, err = e.s.RevokeSubject(ctx, "user")
				corrupt(err, "RevokeSubject")
			},
		},
		{
			name: "expiry index is a string", kind: "expiry index",
			damage: func(e *env) error {
				k := e.prefix + "e"
				return replaceKey(t, k, func(c *redis.Client) error { return c.Set(ctx, k, "x", 0).Err() })
			},
			check: func(t *testing.T, e *env, corrupt func(error, string)) {
				_, _, err := e.s.Issue(ctx, "user")
				corrupt(err, "Issue")
				_, _, err = e.s.Rotate(ctx, e.target)
				corrupt(err, "Rotate")
				err = e.s.ForEach(ctx, func(tokenstore.Info) error { return nil })
				corrupt(err, "ForEach")
				_, err = e.s.Sweep(ctx)
				corrupt(err, "Sweep")
				_, err = e.s.Validate(ctx, e.target)
				require.NoError(t, err, "a token's own keys are whole: it validates, its use written")
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := &env{prefix: uniquePrefix(), clk: newClock()}
			e.s = newStore(t, &redisstore.Options{KeyPrefix: e.prefix, Now: e.clk.Now, TouchInterval: -1, MaxTokensPerSubject: 5,
				Policy: tokenstore.Sliding(time.Hour, 0)})
			var err error
			e.target, e.tInfo, err = e.s.Issue(ctx, "user")
			require.NoError(t, err)
			e.mate, _, err = e.s.Issue(ctx, "user")
			require.NoError(t, err)
			e.other, _, err = e.s.Issue(ctx, "other")
			require.NoError(t, err)
			require.NoError(t, tt.damage(e))
			corrupt := func(err error, what string) {
				t.Helper()
				require.ErrorIs(t, err, tokenstore.ErrCorrupt, what)
				assert.NotContains(t, err.Error(), "WRONGTYPE", what+": a raw Redis error is not an answer")
				assert.NotContains(t, err.Error(), "user_script", what)
				assert.Contains(t, err.Error(), tt.kind, what+": names the kind of key")
				assert.NotContains(t, err.Error(), e.target, what)
				assert.NotContains(t, err.Error(), hashHex(e.target), what)
			}
			tt.check(t, e, corrupt)

			_, err = e.s.Validate(ctx, e.other)
			require.NoError(t, err, "a token of another subject")
			if tt.kind != "subject index" && tt.kind != "expiry index" {
				_, err = e.s.Validate(ctx, e.mate)
				require.NoError(t, err, "another token of the subject")
				_, _, err = e.s.Issue(ctx, "user")
				require.NoError(t, err, "the subject logs in again")
			}
			if tt.kind != "expiry index" {
				e.clk.Advance(2 * time.Hour)
				n, err := e.s.Sweep(ctx)
				if err != nil {
					corrupt(err, "Sweep")
				}
				assert.GreaterOrEqual(t, n, 2, "Sweep goes on past the damaged key")
				_, err = e.s.Validate(ctx, e.other)
				require.ErrorIs(t, err, tokenstore.ErrNotFound, "the other subject's expired token is swept")
			}
		})
	}
}

// TestWrongTypeKeys_Revocations: a record of another type is deleted by
// every revocation that reaches it, as a damaged record is (Revoke,
// RevokeID, RevokeSubject, RevokeFamily), and a successor's record of
// another type makes its predecessor, within its grace, ErrCorrupt for
// every call that reads it through the tombstone.
func TestWrongTypeKeys_Revocations(t *testing.T) {
	ctx := context.Background()
	prefix := uniquePrefix()
	raw := newClient(t)
	s := newStore(t, &redisstore.Options{KeyPrefix: prefix, Now: newClock().Now})
	var tokens []string
	var infos []tokenstore.Info
	for range 3 {
		tok, info, err := s.Issue(ctx, "user")
		require.NoError(t, err)
		tokens, infos = append(tokens, tok), append(infos, info)
	}
	for _, tok := range tokens {
		require.NoError(t, raw.Set(ctx, recordKey(prefix, tok), "x", 0).Err())
	}
	require.NoError(t, s.Revoke(ctx, tokens[0]), "Revoke")
	require.NoError(t, s.RevokeID(ctx, infos[1].ID), "RevokeID")
	n, err := s.RevokeSubject(ctx, "user")
	require.NoError(t, err, "RevokeSubject")
	assert.Equal(t, 1, n)
	for _, tok := range tokens {
		assert.Zero(t, raw.Exists(ctx, recordKey(prefix, tok)).Val(), "deleted")
	}

	a, aInfo, err := s.Issue(ctx, "user")
	require.NoError(t, err)
	b, _, err := s.Rotate(ctx, a, tokenstore.WithGrace(time.Minute))
	require.NoError(t, err)
	require.NoError(t, raw.Del(ctx, recordKey(prefix, b)).Err())
	require.NoError(t, raw.Set(ctx, recordKey(prefix, b), "x", 0).Err())
	for what, call := range map[string]func() error{
		"Validate":                  func() error { _, err := s.Validate(ctx, a); return err },
		"Lookup":                    func() error { _, err := s.Lookup(ctx, a); return err },
		"Rotate":                    func() error { _, _, err := s.Rotate(ctx, a, tokenstore.WithGrace(time.Minute)); return err },
		"Revoke":                    func() error { return s.Revoke(ctx, a) },
		"Validate of the successor": func() error { _, err := s.Validate(ctx, b); return err },
	} {
		err := call()
		require.ErrorIs(t, err, tokenstore.ErrCorrupt, what)
		assert.Contains(t, err.Error(), "record", what)
		assert.NotContains(t, err.Error(), "WRONGTYPE", what)
	}
	n, err = s.RevokeFamily(ctx, aInfo.ID)
	require.NoError(t, err, "RevokeFamily")
	assert.Equal(t, 1, n)
	assert.Zero(t, raw.Exists(ctx, recordKey(prefix, b)).Val(), "deleted")
}

// replaceKey deletes key k and writes, by set, a value of another type in
// its place.
func replaceKey(t *testing.T, k string, set func(*redis.Client) error) error {
	c := newClient(t)
	if err := c.Del(context.Background(), k).Err(); err != nil {
		return err
	}
	return set(c)
}

// targetCorrupt checks that each call that reads target's keys, one of
// which is of another type, answers ErrCorrupt (as corrupt asserts), and
// that List still gives the subject's other token.
func targetCorrupt(t *testing.T, s *redisstore.Store, target string, info tokenstore.Info, corrupt func(error, string)) {
	t.Helper()
	ctx := context.Background()
	_, err := s.Validate(ctx, target)
	corrupt(err, "Validate")
	_, err = s.Lookup(ctx, target)
	corrupt(err, "Lookup")
	_, _, err = s.Rotate(ctx, target)
	corrupt(err, "Rotate")
	_, err = s.Get(ctx, info.ID)
	corrupt(err, "Get")
	list, err := s.List(ctx, "user")
	corrupt(err, "List")
	assert.Len(t, list, 1, "List: the other token")
}

// TestWrongTypeKeys_Tombstone: a rotated-away token's tombstone of another
// type, or a hash without the fields the scripts read, stood for no token:
// Validate, Lookup, Rotate and Revoke of that token answered ErrNotFound,
// so a replay of it after the rotation was not detected (no ErrReused, no
// revocation of its family, within the grace or after it). Every call that
// reads it now answers ErrCorrupt naming the tombstone, never the token or
// its hash, as for the other kinds of key; it costs only that token:
// the family's live token and the other tokens are untouched. RevokeFamily
// goes on past it (a revocation is not refused for damage elsewhere), and
// the token stays refused as corrupt after it.
func TestWrongTypeKeys_Tombstone(t *testing.T) {
	ctx := context.Background()
	damages := map[string]func(c *redis.Client, k string) error{
		"string":          func(c *redis.Client, k string) error { return c.Set(ctx, k, "x", 0).Err() },
		"list":            func(c *redis.Client, k string) error { return c.RPush(ctx, k, "x").Err() },
		"hash, no fields": func(c *redis.Client, k string) error { return c.HSet(ctx, k, "x", "y").Err() },
		"hash, d not a ms": func(c *redis.Client, k string) error {
			return c.HSet(ctx, k, "fam", "f", "next", "n", "ge", "0", "d", "soon").Err()
		},
	}
	for name, damage := range damages {
		for _, grace := range []time.Duration{0, 5 * time.Minute} {
			t.Run(fmt.Sprintf("%s/grace %v", name, grace), func(t *testing.T) {
				prefix := uniquePrefix()
				raw := newClient(t)
				s := newStore(t, &redisstore.Options{KeyPrefix: prefix, Now: newClock().Now, Policy: tokenstore.Sliding(4*time.Hour, 0)})
				other, _, err := s.Issue(ctx, "other")
				require.NoError(t, err)
				mate, _, err := s.Issue(ctx, "user")
				require.NoError(t, err)
				a, aInfo, err := s.Issue(ctx, "user")
				require.NoError(t, err)
				var ropts []tokenstore.RotateOption
				if grace > 0 {
					ropts = append(ropts, tokenstore.WithGrace(grace))
				}
				b, _, err := s.Rotate(ctx, a, ropts...)
				require.NoError(t, err)
				tk := prefix + "r:" + hashHex(a)
				require.NoError(t, replaceKey(t, tk, func(c *redis.Client) error { return damage(c, tk) }))

				corrupt := func(err error, what string) {
					t.Helper()
					require.ErrorIs(t, err, tokenstore.ErrCorrupt, what)
					assert.Contains(t, err.Error(), "tombstone", what+": names the kind of key")
					assert.Contains(t, err.Error(), "r:"+hashHex(a)[:16], what+": names the key by its hash's start")
					assert.Equal(t, 1, strings.Count(err.Error(), "redisstore:"), what+": one prefix: %q", err)
					for _, leak := range []string{"WRONGTYPE", "user_script", a, hashHex(a), b, hashHex(b)} {
						assert.NotContains(t, err.Error(), leak, what)
					}
				}
				calls := []struct {
					what string
					call func() error
				}{
					{"Validate", func() error { _, err := s.Validate(ctx, a); return err }},
					{"Lookup", func() error { _, err := s.Lookup(ctx, a); return err }},
					{"Rotate", func() error { _, _, err := s.Rotate(ctx, a); return err }},
					{"Rotate with a grace (a retry)", func() error { _, _, err := s.Rotate(ctx, a, tokenstore.WithGrace(5*time.Minute)); return err }},
					{"Revoke", func() error { return s.Revoke(ctx, a) }},
				}
				for _, c := range calls {
					corrupt(c.call(), c.what)
				}
				st := s.Stats()
				assert.Zero(t, st.RejectedReused, "no reuse counted: the tombstone says nothing")
				assert.Zero(t, st.RejectedNotFound, "nor an unknown token")

				for _, tok := range []string{b, mate, other} {
					_, err := s.Validate(ctx, tok)
					require.NoError(t, err, "another token: the damage costs only a's tombstone")
				}
				list, err := s.List(ctx, "user")
				require.NoError(t, err)
				assert.Len(t, list, 2, "b and mate")
				typ, err := raw.Type(ctx, tk).Result()
				require.NoError(t, err)
				assert.NotEqual(t, "none", typ, "the damaged key is left for its owner to see")

				n, err := s.RevokeFamily(ctx, aInfo.FamilyID)
				require.NoError(t, err, "RevokeFamily goes on past the damaged tombstone")
				assert.Equal(t, 1, n, "b")
				_, err = s.Validate(ctx, b)
				require.ErrorIs(t, err, tokenstore.ErrNotFound, "the family is revoked")
				for _, c := range calls {
					corrupt(c.call(), c.what+" after RevokeFamily")
				}
				_, err = s.Validate(ctx, mate)
				require.NoError(t, err)
			})
		}
	}
}
