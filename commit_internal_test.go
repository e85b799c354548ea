package tokenstore

import (
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"slices"
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

// queued is the committer's queue length.
func (c *committer) queued() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.queue)
}

// waitQueued waits until the committer's queue holds n calls: they have
// been enqueued behind the transaction in flight.
func waitQueued(t *testing.T, c *committer, n int) {
	t.Helper()
	for c.queued() < n {
		runtime.Gosched()
	}
}

// A solo call (a sweep's transaction) takes its turn in the queue: a run
// caller that queued while a solo transaction was in flight commits before
// the solo call queued after it, in a transaction without it; so an Issue
// waits for at most one sweep transaction, never for the sweep's next
// ones.
func TestCommitter_RunSolo_TakesItsTurn(t *testing.T) {
	bdb := openTestBolt(t)
	c := &committer{db: bdb}
	var mu sync.Mutex
	var order []string
	var txOf = map[string]int{}
	put := func(name string) func(*bolt.Tx) error {
		return func(tx *bolt.Tx) error {
			mu.Lock()
			order = append(order, name)
			txOf[name] = tx.ID()
			mu.Unlock()
			return tx.Bucket([]byte("b")).Put([]byte(name), nil)
		}
	}
	release := make(chan struct{})
	first := make(chan error)
	go func() {
		first <- c.runSolo(func(tx *bolt.Tx) error {
			<-release // holds the writer while the others queue
			return put("sweep-1")(tx)
		})
	}()
	waitLeading(t, c)
	var wg sync.WaitGroup
	wg.Go(func() { assert.NoError(t, c.run(put("issue"))) })
	waitQueued(t, c, 1)
	wg.Go(func() { assert.NoError(t, c.runSolo(put("sweep-2"))) })
	waitQueued(t, c, 2)
	wg.Go(func() { assert.NoError(t, c.run(put("revoke"))) })
	waitQueued(t, c, 3)
	close(release)
	require.NoError(t, <-first)
	wg.Wait()

	assert.Equal(t, []string{"sweep-1", "issue", "sweep-2", "revoke"}, order)
	assert.Len(t, map[int]bool{txOf["sweep-1"]: true, txOf["issue"]: true, txOf["sweep-2"]: true, txOf["revoke"]: true}, 4,
		"every solo call in a transaction of its own, and the run callers around it in theirs")
	assert.Equal(t, []string{"issue", "revoke", "sweep-1", "sweep-2"}, keys(t, bdb))
}

// waitLeading waits until a leader is committing.
func waitLeading(t *testing.T, c *committer) {
	t.Helper()
	for {
		c.mu.Lock()
		l := c.leading
		c.mu.Unlock()
		if l {
			return
		}
		runtime.Gosched()
	}
}

// A solo call's error is its own, and the queue goes on.
func TestCommitter_RunSolo_Error(t *testing.T) {
	bdb := openTestBolt(t)
	c := &committer{db: bdb}
	errBoom := errors.New("boom")
	require.ErrorIs(t, c.runSolo(func(tx *bolt.Tx) error {
		if err := tx.Bucket([]byte("b")).Put([]byte("x"), nil); err != nil {
			return err
		}
		return errBoom
	}), errBoom)
	require.NoError(t, c.run(func(tx *bolt.Tx) error { return tx.Bucket([]byte("b")).Put([]byte("y"), nil) }))
	assert.Equal(t, []string{"y"}, keys(t, bdb), "the failed solo call's write rolled back")
}

// Solo calls among group callers, some of each failing and some group
// callers refusing, from many goroutines: every solo fn runs exactly once,
// in a transaction no other call shares; every caller gets its own
// answer; a group member's retry never takes a solo call into its group;
// the file holds exactly the writes of the calls that succeeded.
func TestCommitter_RunSolo_AmongGroups(t *testing.T) {
	bdb := openTestBolt(t)
	c := &committer{db: bdb}
	errBad, errNo := errors.New("bad"), errors.New("refused")
	var mu sync.Mutex
	soloRuns := map[int]int{}
	// The calls that ran in each transaction (by *bolt.Tx: a rolled-back
	// transaction's ID is the next one's too).
	txCalls := map[*bolt.Tx]map[string]bool{}
	ran := func(tx *bolt.Tx, name string) {
		mu.Lock()
		defer mu.Unlock()
		if txCalls[tx] == nil {
			txCalls[tx] = map[string]bool{}
		}
		txCalls[tx][name] = true
	}
	var wg sync.WaitGroup
	want := map[string]bool{}
	for i := range 200 {
		name := fmt.Sprintf("k%03d", i)
		solo := i%5 == 0
		fails := i%7 == 3
		refuses := !solo && !fails && i%11 == 4
		if !fails && !refuses {
			want[name] = true
		}
		wg.Go(func() {
			fn := func(tx *bolt.Tx) error {
				ran(tx, name)
				if solo {
					mu.Lock()
					soloRuns[i]++
					mu.Unlock()
				}
				if err := tx.Bucket([]byte("b")).Put([]byte(name), nil); err != nil {
					return err
				}
				switch {
				case fails:
					return errBad
				case refuses:
					return refuse(errNo)
				}
				return nil
			}
			var err error
			if solo {
				err = c.runSolo(fn)
			} else {
				err = c.run(func(tx *bolt.Tx) error {
					if refuses { // a refusal writes nothing
						ran(tx, name)
						return refuse(errNo)
					}
					return fn(tx)
				})
			}
			switch {
			case fails:
				assert.ErrorIs(t, err, errBad, name)
			case refuses:
				assert.ErrorIs(t, err, errNo, name)
			default:
				assert.NoError(t, err, name)
			}
		})
	}
	wg.Wait()
	for i := 0; i < 200; i += 5 {
		assert.Equal(t, 1, soloRuns[i], "solo call %d ran once", i)
	}
	for _, calls := range txCalls {
		for name := range calls {
			var i int
			_, _ = fmt.Sscanf(name, "k%d", &i)
			if i%5 == 0 {
				assert.Len(t, calls, 1, "solo call %s shared a transaction with %v", name, calls)
			}
		}
	}
	var got []string
	for k := range want {
		got = append(got, k)
	}
	slices.Sort(got)
	assert.Equal(t, got, keys(t, bdb))
	assert.False(t, c.leading, "no leader left behind")
	assert.Empty(t, c.queue)
}
