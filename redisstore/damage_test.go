package redisstore_test

import (
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokenstore/tokenstore"
	"github.com/tokenstore/tokenstore/redisstore"
)

// TestListForEach_DamagedRecordCostsOnlyItself (issue 12, kind 3): a record with
// a damaged field costs List and ForEach only itself: the other tokens are listed,
// and the error wraps ErrCorrupt and names the damaged token's ID.
func TestListForEach_DamagedRecordCostsOnlyItself(t *testing.T) {
	ctx := t.Context()
	prefix := uniquePrefix()
	c := newClock()
	rdb := newClient(t)
	s := newStore(t, &redisstore.Options{KeyPrefix: prefix, Now: c.Now})
	var tokens []string
	var infos []tokenstore.Info
	for range 5 {
		token, info, err := s.Issue(ctx, "user", tokenstore.WithPolicy(tokenstore.Absolute(time.Hour)))
		require.NoError(t, err)
		tokens, infos = append(tokens, token), append(infos, info)
	}
	f, err := tokenstore.NewFormat("")
	require.NoError(t, err)
	h, err := f.Parse(tokens[2])
	require.NoError(t, err)
	require.NoError(t, rdb.HSet(ctx, prefix+"t:"+hex.EncodeToString(h[:]), "c", "not a number").Err())

	list, err := s.List(ctx, "user")
	require.ErrorIs(t, err, tokenstore.ErrCorrupt)
	require.Contains(t, err.Error(), infos[2].ID.String(), "names the damaged token")
	require.Len(t, list, 4, "every other token")
	for _, in := range list {
		require.NotEqual(t, infos[2].ID, in.ID)
	}

	var seen []tokenstore.Info
	err = s.ForEach(ctx, func(in tokenstore.Info) error { seen = append(seen, in); return nil })
	require.ErrorIs(t, err, tokenstore.ErrCorrupt, "ForEach")
	require.Contains(t, err.Error(), infos[2].ID.String(), "ForEach names the damaged token")
	require.Len(t, seen, 4, "ForEach: every other token")
}

// TestSweep_DamagedRecordCostsOnlyItself (issue 12, kind 3): the reported
// case on Redis (1,000 expired tokens, one damaged record, five sweeps:
// each failed at it and 430 tokens were never deleted) and more damaged
// records than one sweep script takes.
func TestSweep_DamagedRecordCostsOnlyItself(t *testing.T) {
	cases := []struct {
		name    string
		n       int
		damaged func(i int) bool
	}{
		{"one of 1000", 1000, func(i int) bool { return i == 500 }},
		{"1200 of 2500", 2500, func(i int) bool { return i%2 == 0 && i < 2400 }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			prefix := uniquePrefix()
			c := newClock()
			rdb := newClient(t)
			s := newStore(t, &redisstore.Options{KeyPrefix: prefix, Now: c.Now})
			f, err := tokenstore.NewFormat("")
			require.NoError(t, err)
			var bad []string
			for i := range tc.n {
				token, info, err := s.Issue(ctx, "user", tokenstore.WithPolicy(tokenstore.Absolute(time.Hour)))
				require.NoError(t, err)
				if tc.damaged(i) {
					h, err := f.Parse(token)
					require.NoError(t, err)
					require.NoError(t, rdb.HSet(ctx, prefix+"t:"+hex.EncodeToString(h[:]), "u", "garbage").Err())
					bad = append(bad, info.ID.String())
				}
			}
			c.Advance(2 * time.Hour)
			n, err := s.Sweep(ctx)
			require.ErrorIs(t, err, tokenstore.ErrCorrupt)
			named := 0
			for _, id := range bad {
				if strings.Contains(err.Error(), id) {
					named++
				}
			}
			require.Equal(t, min(len(bad), 100), named, "the damaged records are named, up to 100")
			require.Contains(t, err.Error(), fmt.Sprintf("%d damaged records", len(bad)))
			require.Equal(t, tc.n-len(bad), n, "every other expired token deleted")
			for i := range 4 {
				n, err := s.Sweep(ctx)
				require.NoError(t, err, "sweep %d: reported once", i+2)
				require.Zero(t, n)
			}
			left, err := rdb.ZCard(ctx, prefix+"e").Result()
			require.NoError(t, err)
			require.EqualValues(t, len(bad), left, "only the damaged records are left")
		})
	}
}

// TestRecord_OlderPolicyStillReads: a record stored before Policy.Validate
// refused a sliding idle timeout longer than its cap still reads, and is
// honoured as stored: it dies at its cap.
func TestRecord_OlderPolicyStillReads(t *testing.T) {
	ctx := t.Context()
	prefix := uniquePrefix()
	c := newClock()
	rdb := newClient(t)
	s := newStore(t, &redisstore.Options{KeyPrefix: prefix, Now: c.Now})
	token, info, err := s.Issue(ctx, "user", tokenstore.WithPolicy(tokenstore.Sliding(time.Hour, 2*time.Hour)))
	require.NoError(t, err)
	f, err := tokenstore.NewFormat("")
	require.NoError(t, err)
	h, err := f.Parse(token)
	require.NoError(t, err)
	require.NoError(t, rdb.HSet(ctx, prefix+"t:"+hex.EncodeToString(h[:]), "ttl", (3*time.Hour).Milliseconds()).Err())

	got, err := s.Lookup(ctx, token)
	require.NoError(t, err)
	require.Equal(t, tokenstore.Sliding(3*time.Hour, 2*time.Hour), got.Policy)
	require.True(t, info.CreatedAt.Add(2*time.Hour).Equal(got.ExpiresAt), "dies at its cap")
}

// TestDamagedRecord_EveryField (issue 12, kind 3) damages each field of a
// record in turn, deleted or not a number: every call that meets it
// reports ErrCorrupt naming the token where it can (never a raw Lua error,
// never a valid token), and it costs only itself: the subject's other
// tokens are listed and walked, the subject can still log in under its
// limit, Sweep deletes the rest, and Revoke deletes it.
func TestDamagedRecord_EveryField(t *testing.T) {
	for _, dmg := range []struct{ field, val string }{
		{"id", ""}, {"sub", ""}, {"c", ""}, {"u", ""}, {"pol", ""}, {"ttl", ""}, {"max", ""},
		{"c", "x"}, {"u", "x"}, {"pol", "x"}, {"ttl", "x"}, {"max", "x"}, {"ttl", "0"}, {"max", "-1"},
	} {
		name := dmg.field + " deleted"
		if dmg.val != "" {
			name = dmg.field + "=" + dmg.val
		}
		t.Run(name, func(t *testing.T) {
			ctx := t.Context()
			prefix := uniquePrefix()
			c := newClock()
			rdb := newClient(t)
			s := newStore(t, &redisstore.Options{KeyPrefix: prefix, Now: c.Now, MaxTokensPerSubject: 3, TouchInterval: -1})
			var tokens []string
			var infos []tokenstore.Info
			for range 3 {
				token, info, err := s.Issue(ctx, "user", tokenstore.WithPolicy(tokenstore.Sliding(time.Hour, 0)))
				require.NoError(t, err)
				tokens, infos = append(tokens, token), append(infos, info)
			}
			f, err := tokenstore.NewFormat("")
			require.NoError(t, err)
			h, err := f.Parse(tokens[1])
			require.NoError(t, err)
			key := prefix + "t:" + hex.EncodeToString(h[:])
			if dmg.val == "" {
				require.NoError(t, rdb.HDel(ctx, key, dmg.field).Err())
			} else {
				require.NoError(t, rdb.HSet(ctx, key, dmg.field, dmg.val).Err())
			}
			corrupt := func(err error, what string) {
				t.Helper()
				require.ErrorIs(t, err, tokenstore.ErrCorrupt, what)
				require.NotContains(t, err.Error(), "user_script", what+": a Lua error is not an answer")
				if dmg.field != "id" {
					require.Contains(t, err.Error(), infos[1].ID.String(), what+" names the token")
				}
			}
			_, err = s.Validate(ctx, tokens[1])
			corrupt(err, "Validate")
			_, err = s.Lookup(ctx, tokens[1])
			corrupt(err, "Lookup")
			_, _, err = s.Rotate(ctx, tokens[1])
			corrupt(err, "Rotate")
			if dmg.field != "id" {
				_, err = s.Get(ctx, infos[1].ID)
				corrupt(err, "Get")
			}

			_, err = s.Validate(ctx, tokens[0])
			require.NoError(t, err, "another token of the subject")
			list, err := s.List(ctx, "user")
			corrupt(err, "List")
			require.Len(t, list, 2, "List: every other token")
			n := 0
			err = s.ForEach(ctx, func(tokenstore.Info) error { n++; return nil })
			corrupt(err, "ForEach")
			require.Equal(t, 2, n, "ForEach: every other token")
			_, _, err = s.Issue(ctx, "user")
			require.NoError(t, err, "a damaged record is not a live token: the subject is under its limit")
			_, _, err = s.Issue(ctx, "user")
			require.ErrorIs(t, err, tokenstore.ErrTokenLimit, "and the limit still counts the others")

			c.Advance(2 * time.Hour)
			swept, err := s.Sweep(ctx)
			require.ErrorIs(t, err, tokenstore.ErrCorrupt, "Sweep reports it")
			require.Equal(t, 2, swept, "Sweep deletes every other expired token (the third has the default policy)")
			require.NoError(t, s.Revoke(ctx, tokens[1]), "Revoke deletes a damaged record")
			require.Zero(t, rdb.Exists(ctx, key).Val())
			_, err = s.Lookup(ctx, tokens[1])
			require.ErrorIs(t, err, tokenstore.ErrNotFound)
		})
	}
}
