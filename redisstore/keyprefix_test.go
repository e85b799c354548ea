package redisstore_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tokenstore/tokenstore/redisstore"
)

// TestNew_NestedKeyPrefixes: a store keeps a subject's index under
// KeyPrefix + "s:" + subject, any subject, so a store whose KeyPrefix is
// another's followed by "s:" has every key inside the other's subject
// keys: RevokeSubject of the subject "e" on the outer store emptied the
// inner store's expiry index (its tokens were no longer swept, counted or
// walked), and the outer store's subject "t:<hash>" was the inner store's
// record of that token. New refuses every KeyPrefix that can so nest
// (ErrInvalidKeyPrefix): one must end with ":" and hold no ":s:" (the
// boundary a subject key's "s:" would fall on).
func TestNew_NestedKeyPrefixes(t *testing.T) {
	ctx := context.Background()
	base := uniquePrefix() // "testN:"
	pairs := []struct{ outer, inner string }{
		{base, base + "s:"},
		{base, base + "s:x:"},
		{base[:len(base)-1], base[:len(base)-1] + "s:"}, // no trailing colon: "testN" and "testNs:"
		{"{" + base[:len(base)-1] + "}:", "{" + base[:len(base)-1] + "}:s:"},
	}
	for _, tt := range pairs {
		outer, errOuter := redisstore.New(newClient(t), &redisstore.Options{KeyPrefix: tt.outer, SweepInterval: -1})
		inner, errInner := redisstore.New(newClient(t), &redisstore.Options{KeyPrefix: tt.inner, SweepInterval: -1})
		if outer != nil {
			t.Cleanup(func() { _ = outer.Close() })
		}
		if inner != nil {
			t.Cleanup(func() { _ = inner.Close() })
		}
		if errOuter != nil || errInner != nil {
			err := errInner
			if err == nil {
				err = errOuter
			}
			require.ErrorIs(t, err, redisstore.ErrInvalidKeyPrefix, "%q and %q", tt.outer, tt.inner)
			assert.Contains(t, err.Error(), "KeyPrefix", "names the option")
			continue
		}
		// Both made: they must not touch each other's keys.
		_, _, err := inner.Issue(ctx, "user")
		require.NoError(t, err)
		subject := tt.inner[len(tt.outer)+len("s:"):] + "e" // the outer store's key for it is the inner one's expiry index
		_, err = outer.RevokeSubject(ctx, subject)
		require.NoError(t, err)
		assert.Equal(t, int64(1), inner.Stats().Tokens, "%q and %q: the outer store emptied the inner one's expiry index", tt.outer, tt.inner)
	}

	for _, ok := range []string{"tokenstore:", "{tokenstore}:", "s:", "s:app:", "tokens:", "app:sessions:", "app:x:s1:", base + "t:", base + "i:"} {
		s, err := redisstore.New(newClient(t), &redisstore.Options{KeyPrefix: ok, SweepInterval: -1})
		require.NoError(t, err, "%q", ok)
		require.NoError(t, s.Close())
	}
	for _, bad := range []string{"tokens", "app:s:", "{app}:s:", "a:s:b:"} {
		_, err := redisstore.New(newClient(t), &redisstore.Options{KeyPrefix: bad, SweepInterval: -1})
		require.ErrorIs(t, err, redisstore.ErrInvalidKeyPrefix, "%q", bad)
	}
}
