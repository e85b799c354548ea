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
	tokenstoretest.Run(t, func(t *testing.T, c tokenstoretest.Config) tokenstore.Store {
		s, err := redisstore.New(newClient(t), &redisstore.Options{
			KeyPrefix:           uniquePrefix(),
			Now:                 c.Now,
			Policy:              c.Policy,
			Prefix:              c.Prefix,
			MaxTokensPerSubject: c.MaxTokensPerSubject,
			TouchInterval:       c.TouchInterval,
			SweepInterval:       c.SweepInterval,
			Logger:              c.Logger,
		})
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, s.Close()) })
		return s
	})
}
