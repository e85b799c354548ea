package tokenstore

import (
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
)

func openTestBolt(t *testing.T) *bolt.DB {
	t.Helper()
	bdb, err := bolt.Open(filepath.Join(t.TempDir(), "commit.db"), 0o600, nil)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, bdb.Close()) })
	require.NoError(t, bdb.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucket([]byte("b"))
		return err
	}))
	return bdb
}

func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func keys(t *testing.T, bdb *bolt.DB) []string {
	t.Helper()
	var out []string
	require.NoError(t, bdb.View(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("b")).ForEach(func(k, _ []byte) error {
			out = append(out, string(k))
			return nil
		})
	}))
	return out
}

// TestCommitter_Commit_FailingMember runs one group with a failing member
// at each position: the others commit, the failed one gets its own error
// and nothing of its work, and it is not woken before the others' retry
// has committed (its error may depend on their work: a Revoke that failed
// because a RevokeSubject earlier in the group deleted the token must not
// return while that deletion is still uncommitted).
func TestCommitter_Commit_FailingMember(t *testing.T) {
	errBoom := errors.New("boom")
	for failAt := range 3 {
		t.Run(fmt.Sprintf("member %d fails", failAt), func(t *testing.T) {
			bdb := openTestBolt(t)
			c := &committer{db: bdb}
			group := make([]*call, 3)
			runs := make([]int, 3)
			var wokenEarly bool
			for i := range group {
				group[i] = &call{done: make(chan struct{})}
				group[i].fn = func(tx *bolt.Tx) error {
					runs[i]++
					if i == failAt {
						return errBoom
					}
					if isClosed(group[failAt].done) {
						wokenEarly = true
					}
					return tx.Bucket([]byte("b")).Put(fmt.Appendf(nil, "k%d", i), []byte("v"))
				}
			}
			c.commit(group)

			for i, cl := range group {
				assert.True(t, isClosed(cl.done), "member %d woken", i)
				if i == failAt {
					assert.ErrorIs(t, cl.err, errBoom)
					assert.Equal(t, 1, runs[i], "a failed member is not retried")
				} else {
					assert.NoError(t, cl.err, "member %d", i)
				}
			}
			var want []string
			for i := range 3 {
				if i != failAt {
					want = append(want, fmt.Sprintf("k%d", i))
				}
			}
			assert.Equal(t, want, keys(t, bdb), "the others committed, the failed one did not")
			assert.False(t, wokenEarly, "the failed member was woken before the group's retry committed")
		})
	}
}

// TestCommitter_Run_Concurrent has many writers share transactions, some
// failing: every successful one is durable, no failed one left a trace.
func TestCommitter_Run_Concurrent(t *testing.T) {
	bdb := openTestBolt(t)
	c := &committer{db: bdb}
	errOdd := errors.New("odd")
	var wg sync.WaitGroup
	for i := range 64 {
		wg.Go(func() {
			err := c.run(func(tx *bolt.Tx) error {
				if i%2 == 1 {
					return errOdd
				}
				return tx.Bucket([]byte("b")).Put(fmt.Appendf(nil, "k%02d", i), []byte("v"))
			})
			if i%2 == 1 {
				assert.ErrorIs(t, err, errOdd)
			} else {
				assert.NoError(t, err)
			}
		})
	}
	wg.Wait()
	got := keys(t, bdb)
	assert.Len(t, got, 32)
	for _, k := range got {
		var n int
		_, err := fmt.Sscanf(k, "k%d", &n)
		require.NoError(t, err)
		assert.Zero(t, n%2, "key %s of a failed member", k)
	}
	assert.False(t, c.leading, "no leader left behind")
	assert.Empty(t, c.queue)
}
