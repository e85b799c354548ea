package redisstore_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tokenstore/tokenstore"
	"github.com/tokenstore/tokenstore/redisstore"
	"github.com/tokenstore/tokenstore/tokenstoretest"
)

// TestConformance runs the suite every backend passes, each test on a
// fresh KeyPrefix of the test server.
func TestConformance(t *testing.T) {
	needRedis(t)
	tokenstoretest.Run(t, func(t *testing.T, o tokenstore.Options) tokenstore.Store {
		// TouchInterval has no meaning here: every Validate writes to Redis.
		s, err := redisstore.New(newClient(t), &redisstore.Options{
			KeyPrefix:           uniquePrefix(),
			Policy:              o.Policy,
			Prefix:              o.Prefix,
			Now:                 o.Now,
			MaxTokensPerSubject: o.MaxTokensPerSubject,
			SweepInterval:       o.SweepInterval,
			Logger:              o.Logger,
		})
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, s.Close()) })
		return s
	})
}
