package redisstore_test

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tokenstore/tokenstore"
	"github.com/tokenstore/tokenstore/internal/redistest"
	"github.com/tokenstore/tokenstore/redisstore"
)

// TestFullRedis is issue 13's case 3: Redis at maxmemory under
// noeviction (or a volatile policy with nothing left to evict) refuses
// writes. Validate must keep answering, for absolute and sliding tokens
// alike, and the calls that must write fail with ErrOutOfMemory, losing
// nothing.
func TestFullRedis(t *testing.T) {
	srv := ownRedis(t, "--maxmemory-policy", "noeviction")
	raw := rawClient(t, srv.Addr)
	ctx := context.Background()
	clk := newClock()
	prefix := uniquePrefix()
	s := storeOn(t, srv.Addr, &redisstore.Options{Now: clk.Now, KeyPrefix: prefix, TouchInterval: time.Minute})
	every := storeOn(t, srv.Addr, &redisstore.Options{Now: clk.Now, KeyPrefix: prefix, TouchInterval: -1})
	abs, absInfo, err := s.Issue(ctx, "victim", tokenstore.WithPolicy(tokenstore.Absolute(time.Hour)))
	require.NoError(t, err)
	sliding, slidInfo, err := s.Issue(ctx, "victim", tokenstore.WithPolicy(tokenstore.Sliding(time.Hour, 0)))
	require.NoError(t, err)
	_, err = s.Validate(ctx, sliding) // loads the scripts
	require.NoError(t, err)
	_, err = every.Validate(ctx, sliding)
	require.NoError(t, err)

	full := fillRedis(t, raw, s)
	// The stored uses are a TouchInterval behind: each Validate tries to
	// write, fails, and answers from its read.
	clk.Advance(10 * time.Minute)
	writes := commandCalls(t, raw, "evalsha")
	got, err := s.Validate(ctx, abs)
	require.NoError(t, err, "an absolute token validates on a full Redis")
	assert.Equal(t, absInfo.ExpiresAt, got.ExpiresAt)
	got, err = s.Validate(ctx, sliding)
	require.NoError(t, err, "a sliding token validates on a full Redis")
	assert.Equal(t, slidInfo.ExpiresAt, got.ExpiresAt, "its use was not written: the stored deadline stands")
	assert.Equal(t, uint64(2), s.TouchesDropped())
	assert.Equal(t, writes+1, commandCalls(t, raw, "evalsha"), "after a refused write, Validate stops trying for a while")
	_, err = every.Validate(ctx, sliding)
	require.NoError(t, err, "TouchInterval < 0: every use is written, and a refused write still validates")
	assert.Equal(t, uint64(1), every.TouchesDropped())
	_, err = s.Lookup(ctx, sliding)
	require.NoError(t, err)
	_, err = s.Get(ctx, absInfo.ID)
	require.NoError(t, err)
	list, err := s.List(ctx, "victim")
	require.NoError(t, err)
	assert.Len(t, list, 2)

	require.ErrorIs(t, full, redisstore.ErrOutOfMemory)
	assert.Contains(t, full.Error(), "redisstore: issue: Redis is out of memory (used memory is at maxmemory")
	assert.Contains(t, full.Error(), "OOM command not allowed", "Redis's own words are kept")
	assert.Equal(t, 1, strings.Count(full.Error(), "redisstore:"), "the package is named once")
	assert.NotContains(t, full.Error(), "tokenstore:")
	assert.NotErrorIs(t, full, tokenstore.ErrNotFound)

	// Rotate must write the new token: refused, and the old one stays.
	_, _, err = s.Rotate(ctx, sliding)
	require.ErrorIs(t, err, redisstore.ErrOutOfMemory)
	assert.Contains(t, err.Error(), "redisstore: rotate: Redis is out of memory")
	_, err = s.Lookup(ctx, sliding)
	require.NoError(t, err, "a refused Rotate loses nothing")

	// Revocations only delete, which a full Redis allows.
	require.NoError(t, s.Revoke(ctx, abs))
	_, err = s.Validate(ctx, abs)
	require.ErrorIs(t, err, tokenstore.ErrNotFound)
	n, err := s.RevokeSubject(ctx, "victim")
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	_, err = s.Validate(ctx, sliding)
	require.ErrorIs(t, err, tokenstore.ErrNotFound)
}

// TestReadOnlyReplica: after a failover leaves a client on a replica, or
// one is pointed at a replica, Validate answers (EVALSHA_RO runs there)
// and writes fail with tokenstore.ErrReadOnly naming the replica.
func TestReadOnlyReplica(t *testing.T) {
	primary, replica := ownReplicated(t)
	ctx := context.Background()
	clk := newClock()
	prefix := uniquePrefix()
	p := storeOn(t, primary.Addr, &redisstore.Options{Now: clk.Now, KeyPrefix: prefix})
	token, info, err := p.Issue(ctx, "user")
	require.NoError(t, err)
	waitReplicated(t, primary.Addr, replica.Addr)

	r := storeOn(t, replica.Addr, &redisstore.Options{Now: clk.Now, KeyPrefix: prefix})
	got, err := r.Validate(ctx, token)
	require.NoError(t, err, "a fresh use only reads")
	assert.Equal(t, info.ID, got.ID)
	clk.Advance(10 * time.Minute)
	_, err = r.Validate(ctx, token)
	require.NoError(t, err, "a use that cannot be written still validates")
	assert.Equal(t, uint64(1), r.TouchesDropped())

	_, _, err = r.Issue(ctx, "user")
	require.ErrorIs(t, err, tokenstore.ErrReadOnly)
	assert.Contains(t, err.Error(), "redisstore: issue: store is read-only: connected to a read-only replica")
	assert.Equal(t, 1, strings.Count(err.Error(), "redisstore:"), "the package is named once")
	assert.NotContains(t, err.Error(), "tokenstore:")
	err = r.Revoke(ctx, token)
	require.ErrorIs(t, err, tokenstore.ErrReadOnly)
	_, err = p.Lookup(ctx, token)
	require.NoError(t, err, "nothing lost")

	// List (the admin page) reads: it works on a replica even when the
	// subject's index holds an entry whose record Redis has expired, and
	// leaves pruning it to the primary.
	gone, _, err := p.Issue(ctx, "user")
	require.NoError(t, err)
	raw := rawClient(t, primary.Addr)
	require.NoError(t, raw.Del(ctx, recordKey(prefix, gone)).Err()) // as Redis expires a record
	waitReplicated(t, primary.Addr, replica.Addr)
	list, err := r.List(ctx, "user")
	require.NoError(t, err, "List on a replica")
	require.Len(t, list, 1)
	assert.Equal(t, info.ID, list[0].ID)
	require.EqualValues(t, 2, raw.ZCard(ctx, prefix+"s:user").Val())
	list, err = p.List(ctx, "user")
	require.NoError(t, err)
	require.Len(t, list, 1)
	assert.EqualValues(t, 1, raw.ZCard(ctx, prefix+"s:user").Val(), "List on the primary prunes the entry")
}

// TestDeadlines is issue 13's case 4: Redis stalls (CLIENT PAUSE) and
// every call, on a client configured with nothing but its address,
// returns within its context's deadline plus a small bound.
func TestDeadlines(t *testing.T) {
	srv := ownRedis(t)
	raw := rawClient(t, srv.Addr)
	ctx := context.Background()
	bare := redis.NewClient(&redis.Options{Addr: srv.Addr}) // no ContextTimeoutEnabled
	t.Cleanup(func() { _ = bare.Close() })
	s, err := redisstore.New(bare, &redisstore.Options{KeyPrefix: uniquePrefix(), SweepInterval: -1})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	token, info, err := s.Issue(ctx, "user")
	require.NoError(t, err)
	_, err = s.Validate(ctx, token)
	require.NoError(t, err)
	require.Equal(t, int64(1), s.Stats().Tokens)

	const deadline = 100 * time.Millisecond
	bound := 400 * time.Millisecond // scheduling on a loaded machine
	pause := 3 * time.Second        // the calls and Stats take about 2 s
	if *long {
		pause = 10 * time.Second
	}
	calls := []struct {
		name string
		fn   func(context.Context) error
	}{
		{"Validate", func(ctx context.Context) error { _, err := s.Validate(ctx, token); return err }},
		{"Lookup", func(ctx context.Context) error { _, err := s.Lookup(ctx, token); return err }},
		{"Issue", func(ctx context.Context) error { _, _, err := s.Issue(ctx, "user"); return err }},
		{"Get", func(ctx context.Context) error { _, err := s.Get(ctx, info.ID); return err }},
		{"List", func(ctx context.Context) error { _, err := s.List(ctx, "user"); return err }},
		{"Rotate", func(ctx context.Context) error { _, _, err := s.Rotate(ctx, token); return err }},
		// The first with a grace also reads the rotation key.
		{"Rotate with a grace", func(ctx context.Context) error {
			_, _, err := s.Rotate(ctx, token, tokenstore.WithGrace(time.Minute))
			return err
		}},
		{"RevokeFamily", func(ctx context.Context) error { _, err := s.RevokeFamily(ctx, info.ID); return err }},
		{"Revoke", func(ctx context.Context) error { return s.Revoke(ctx, token) }},
		{"RevokeID", func(ctx context.Context) error { return s.RevokeID(ctx, info.ID) }},
		{"RevokeSubject", func(ctx context.Context) error { _, err := s.RevokeSubject(ctx, "user"); return err }},
		{"Sweep", func(ctx context.Context) error { _, err := s.Sweep(ctx); return err }},
	}
	require.NoError(t, raw.Do(ctx, "CLIENT", "PAUSE", pause.Milliseconds(), "ALL").Err())
	paused := time.Now()
	for _, c := range calls {
		cctx, cancel := context.WithTimeout(ctx, deadline)
		start := time.Now()
		err := c.fn(cctx)
		took := time.Since(start)
		cancel()
		assert.Less(t, took, deadline+bound, "%s took %v with a %v deadline", c.name, took, deadline)
		require.Less(t, time.Since(paused), pause, "Redis resumed before %s returned: the test proves nothing", c.name)
		require.ErrorIs(t, err, context.DeadlineExceeded, c.name)
		assert.Contains(t, err.Error(), "redisstore: ", c.name)
		t.Logf("%-13s returned after %v", c.name, took.Round(time.Millisecond))
	}
	before := time.Now()
	st := s.Stats() // no context: bounded by its own second
	assert.Less(t, time.Since(before), time.Second+bound, "Stats")
	require.Less(t, time.Since(paused), pause, "Redis resumed before Stats returned: the test proves nothing")
	assert.Equal(t, int64(1), st.Tokens, "the last count read")
}

// TestWritesPerTouchInterval is issue 13's case 5: a token validated on
// every request costs Redis one write per TouchInterval, not one per
// request, and the reads run as EVALSHA_RO.
func TestWritesPerTouchInterval(t *testing.T) {
	srv := ownRedis(t)
	raw := rawClient(t, srv.Addr)
	ctx := context.Background()
	clk := newClock()
	s := storeOn(t, srv.Addr, &redisstore.Options{Now: clk.Now, Policy: tokenstore.Sliding(time.Hour, 0)}) // TouchInterval: 1 minute
	token, _, err := s.Issue(ctx, "user")
	require.NoError(t, err)
	_, err = s.Validate(ctx, token) // loads the read script
	require.NoError(t, err)
	dirty := func() int64 { return infoInt(t, raw, "persistence", "rdb_changes_since_last_save") }
	ro := func() int64 { return commandCalls(t, raw, "evalsha_ro") + commandCalls(t, raw, "eval_ro") }

	before, roBefore := dirty(), ro()
	for range 300 { // a request every 100 ms for 30 s
		clk.Advance(100 * time.Millisecond)
		_, err := s.Validate(ctx, token)
		require.NoError(t, err)
	}
	assert.Equal(t, before, dirty(), "300 uses within a TouchInterval write nothing")
	assert.Equal(t, int64(300), ro()-roBefore, "each ran a read-only script")
	assert.Zero(t, s.Stats().TouchesPersisted)

	clk.Advance(31 * time.Second) // a minute after the issue
	now := clk.Now()
	got, err := s.Validate(ctx, token)
	require.NoError(t, err)
	assert.Greater(t, dirty(), before, "a use a TouchInterval after the stored one is written")
	assert.Equal(t, now.Add(time.Hour), got.ExpiresAt)
	st := s.Stats()
	assert.Equal(t, uint64(1), st.TouchesPersisted)
	assert.Equal(t, uint64(1), st.TouchWrites)
	assert.Equal(t, uint64(302), st.Validated)
}

// TestNoEvalRO runs the store on a Redis without EVALSHA_RO and EVAL_RO
// (renamed away, as on Redis 6.2, which lacks them): reads fall back to
// EVALSHA.
func TestNoEvalRO(t *testing.T) {
	srv := ownRedis(t, "--rename-command", "EVALSHA_RO", "", "--rename-command", "EVAL_RO", "")
	ctx := context.Background()
	s := storeOn(t, srv.Addr, &redisstore.Options{Now: newClock().Now})
	token, info, err := s.Issue(ctx, "user")
	require.NoError(t, err)
	for range 2 {
		got, err := s.Validate(ctx, token)
		require.NoError(t, err)
		assert.Equal(t, info.ID, got.ID)
		_, err = s.Get(ctx, info.ID)
		require.NoError(t, err)
	}
	require.NoError(t, s.Revoke(ctx, token))
	_, err = s.Lookup(ctx, token)
	require.ErrorIs(t, err, tokenstore.ErrNotFound)
}

// commandCalls reads the calls of one command from INFO commandstats.
func commandCalls(t testing.TB, rdb *redis.Client, cmd string) int64 {
	t.Helper()
	info, err := rdb.Info(context.Background(), "commandstats").Result()
	require.NoError(t, err)
	_, rest, ok := strings.Cut(info, "cmdstat_"+cmd+":calls=")
	if !ok {
		return 0
	}
	calls, _, _ := strings.Cut(rest, ",")
	n, err := strconv.ParseInt(calls, 10, 64)
	require.NoError(t, err)
	return n
}

// fillRedis fills Redis (noeviction) with other users' logins, issued
// through s, until it refuses one with ErrOutOfMemory; then it lowers
// maxmemory to the memory used before the fill. Used memory moves (client
// buffers): kept well above maxmemory, every later write is refused, not
// just the next one. It returns the refusal.
func fillRedis(t testing.TB, raw *redis.Client, s *redisstore.Store) error {
	t.Helper()
	ctx := context.Background()
	base := infoInt(t, raw, "memory", "used_memory")
	require.NoError(t, raw.ConfigSet(ctx, "maxmemory", strconv.FormatInt(base+256<<10, 10)).Err())
	var full error
	for i := 0; full == nil; i++ {
		require.Less(t, i, 100000, "Redis never filled up")
		_, _, full = s.Issue(ctx, fmt.Sprintf("user-%d", i))
	}
	require.ErrorIs(t, full, redisstore.ErrOutOfMemory)
	require.NoError(t, raw.ConfigSet(ctx, "maxmemory", strconv.FormatInt(base, 10)).Err())
	return full
}

// ownReplicated starts a Redis and a replica of it (diskless sync at
// once, so that waitReplicated soon finds it in sync).
func ownReplicated(t testing.TB) (primary, replica *redistest.Server) {
	primary = ownRedis(t, "--repl-diskless-sync-delay", "0")
	return primary, ownRedis(t, "--replicaof", hostPort(primary.Addr))
}

// hostPort turns "host:port" into "host port", as replicaof wants it.
func hostPort(addr string) string {
	h, p, _ := net.SplitHostPort(addr)
	return h + " " + p
}

// waitReplicated waits until the replica is in sync with the primary.
func waitReplicated(t testing.TB, primaryAddr, replicaAddr string) {
	t.Helper()
	ctx := context.Background()
	p := rawClient(t, primaryAddr)
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, err := p.Wait(ctx, 1, 100).Result()
		if err == nil && n >= 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica %s not in sync with %s after 10s: %v", replicaAddr, primaryAddr, err)
		}
	}
}

// TestErrorsNameThePackageOnce: every error says "redisstore:" or
// "tokenstore:" once, never both, never twice (issue 11).
func TestErrorsNameThePackageOnce(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	s := newStore(t, &redisstore.Options{Now: clk.Now, MaxTokensPerSubject: 1, Policy: tokenstore.Absolute(time.Hour)})
	token, info, err := s.Issue(ctx, "user")
	require.NoError(t, err)
	var errs []error
	add := func(_ any, err error) { errs = append(errs, err) }
	_, _, err = s.Issue(ctx, "user")
	errs = append(errs, err) // limit
	add(s.Validate(ctx, "tks_nonsense"))
	_, _, err = s.Issue(ctx, "")
	errs = append(errs, err)
	expired, cancel := context.WithTimeout(ctx, -time.Second)
	defer cancel()
	add(s.Validate(expired, token))
	clk.Advance(time.Hour)
	add(s.Validate(ctx, token))
	add(s.Get(ctx, info.ID))
	require.NoError(t, s.Revoke(ctx, token))
	add(s.Validate(ctx, token))
	errs = append(errs, s.RevokeID(ctx, info.ID))
	require.NoError(t, s.Close())
	add(s.List(ctx, "user"))
	for _, err := range errs {
		require.Error(t, err)
		n := strings.Count(err.Error(), "redisstore:") + strings.Count(err.Error(), "tokenstore:")
		assert.Equal(t, 1, n, "%q", err)
	}
}

// TestTouchIntervalCappedByIdle: a TouchInterval longer than half a
// token's idle timeout is cut to that half, so a token in use never
// expires for want of a write.
func TestTouchIntervalCappedByIdle(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	s := newStore(t, &redisstore.Options{Now: clk.Now, TouchInterval: time.Hour, Policy: tokenstore.Sliding(10*time.Minute, 0)})
	token, _, err := s.Issue(ctx, "user")
	require.NoError(t, err)
	for i := range 6 { // an hour of use, every 5 minutes minus a millisecond
		clk.Advance(5*time.Minute - time.Millisecond)
		got, err := s.Validate(ctx, token)
		require.NoError(t, err, "use %d", i)
		assert.True(t, got.ExpiresAt.After(clk.Now().Add(5*time.Minute)), "use %d: at least half the idle timeout left", i)
	}
	assert.Equal(t, uint64(3), s.Stats().TouchesPersisted, "a write every other use: when the stored one is 5 minutes behind")
}

// TestNoReplicas: a primary configured with min-replicas-to-write that
// has lost its replicas refuses writes; Validate keeps answering.
func TestNoReplicas(t *testing.T) {
	srv := ownRedis(t)
	ctx := context.Background()
	clk := newClock()
	s := storeOn(t, srv.Addr, &redisstore.Options{Now: clk.Now})
	token, _, err := s.Issue(ctx, "user")
	require.NoError(t, err)
	require.NoError(t, rawClient(t, srv.Addr).ConfigSet(ctx, "min-replicas-to-write", "1").Err())

	clk.Advance(10 * time.Minute) // the use is due
	_, err = s.Validate(ctx, token)
	require.NoError(t, err)
	assert.Equal(t, uint64(1), s.TouchesDropped())
	_, _, err = s.Issue(ctx, "user")
	require.ErrorIs(t, err, tokenstore.ErrReadOnly, "a sentinel for the refusal")
	require.ErrorContains(t, err, "min-replicas-to-write")
	require.ErrorContains(t, err, "NOREPLICAS", "Redis's own words are kept")
	assert.Equal(t, 1, strings.Count(err.Error(), "redisstore:"), "the package is named once")
	assert.NotErrorIs(t, err, tokenstore.ErrNotFound)
	_, err = s.RevokeSubject(ctx, "user")
	require.ErrorIs(t, err, tokenstore.ErrReadOnly)
	_, err = s.Lookup(ctx, token)
	require.NoError(t, err, "nothing lost")
}

// TestOneWritePerTouchInterval: many requests that find a token's use due
// at once, on several instances, write it once. Writes are paused while
// they all read, so every one of them finds the use due; the clock moves
// on by a millisecond at each reading, as Redis's does between requests.
func TestOneWritePerTouchInterval(t *testing.T) {
	srv := ownRedis(t)
	raw := rawClient(t, srv.Addr)
	ctx := context.Background()
	var ms atomic.Int64
	ms.Store(time.Now().UnixMilli())
	ticking := func() time.Time { return time.UnixMilli(ms.Add(1)) }
	prefix := uniquePrefix()
	var stores []*redisstore.Store
	for range 4 {
		stores = append(stores, storeOn(t, srv.Addr, &redisstore.Options{Now: ticking, KeyPrefix: prefix, Policy: tokenstore.Sliding(time.Hour, 0)}))
	}
	token, _, err := stores[0].Issue(ctx, "user")
	require.NoError(t, err)
	for _, s := range stores {
		_, err := s.Validate(ctx, token) // loads the scripts
		require.NoError(t, err)
	}
	ms.Add(time.Minute.Milliseconds()) // the use is due
	const n = 16
	ro := commandCalls(t, raw, "evalsha_ro")
	require.NoError(t, raw.Do(ctx, "CLIENT", "PAUSE", 10000, "WRITE").Err())
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			_, err := stores[i%len(stores)].Validate(ctx, token)
			assert.NoError(t, err)
		})
	}
	require.Eventually(t, func() bool { return commandCalls(t, raw, "evalsha_ro") == ro+n },
		5*time.Second, time.Millisecond, "every Validate has read the token while writes are paused")
	require.NoError(t, raw.Do(ctx, "CLIENT", "UNPAUSE").Err())
	wg.Wait()
	var wrote uint64
	for _, s := range stores {
		wrote += s.Stats().TouchesPersisted
	}
	assert.Equal(t, uint64(1), wrote, "%d requests found the use due at once: one writes it", n)
}

// TestFullRedis_IssueUnderLimit: on a full Redis (noeviction), an Issue
// under MaxTokensPerSubject whose subject index holds entries of records
// Redis has expired fails with ErrOutOfMemory like any other, and writes
// nothing: pruning those entries first made the script's later writes
// exempt from the refusal (Redis refuses a script's writes for memory only
// until its first write).
func TestFullRedis_IssueUnderLimit(t *testing.T) {
	srv := ownRedis(t, "--maxmemory-policy", "noeviction")
	raw := rawClient(t, srv.Addr)
	ctx := context.Background()
	prefix := uniquePrefix()
	s := storeOn(t, srv.Addr, &redisstore.Options{KeyPrefix: prefix, MaxTokensPerSubject: 5})
	gone, _, err := s.Issue(ctx, "victim")
	require.NoError(t, err)
	require.NoError(t, raw.Del(ctx, recordKey(prefix, gone)).Err()) // as Redis expires a record KeepExpired after its deadline
	require.EqualValues(t, 1, raw.ZCard(ctx, prefix+"s:victim").Val())

	fillRedis(t, raw, s)
	keys := raw.DBSize(ctx).Val()

	_, _, err = s.Issue(ctx, "victim")
	require.ErrorIs(t, err, redisstore.ErrOutOfMemory)
	assert.Equal(t, keys, raw.DBSize(ctx).Val(), "nothing written")
}

// TestWritesHeld: a Redis that holds writes (CLIENT PAUSE WRITE, as
// FAILOVER does) costs a Validate whose use is due at most a bound, even
// with a context without a deadline (an HTTP request's), on a client
// configured with nothing but its address; and the write, when Redis
// runs it late, records the use as of the request, not of the end of the
// pause, so the token does not slide past its real use.
func TestWritesHeld(t *testing.T) {
	srv := ownRedis(t)
	raw := rawClient(t, srv.Addr)
	ctx := context.Background()
	bare := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { _ = bare.Close() })
	prefix := uniquePrefix()
	s, err := redisstore.New(bare, &redisstore.Options{KeyPrefix: prefix, SweepInterval: -1, TouchInterval: time.Millisecond, Policy: tokenstore.Sliding(time.Hour, 0)})
	require.NoError(t, err)
	token, info, err := s.Issue(ctx, "user")
	require.NoError(t, err)
	_, err = s.Lookup(ctx, token) // loads the read script
	require.NoError(t, err)
	redisNow := func() time.Time { return raw.Time(ctx).Val() }
	for !redisNow().After(info.LastUsedAt.Add(2 * time.Millisecond)) {
		// Redis's clock moves past TouchInterval: the use is due.
	}

	pause := 2 * time.Second
	require.NoError(t, raw.Do(ctx, "CLIENT", "PAUSE", pause.Milliseconds(), "WRITE").Err())
	paused := time.Now()
	got, err := s.Validate(ctx, token)
	took := time.Since(paused)
	require.NoError(t, err, "the read answers")
	asked := redisNow() // reads pass the pause
	assert.Less(t, took, time.Second, "Validate waited %v for a write held %v", took, pause)
	assert.Equal(t, info.ExpiresAt, got.ExpiresAt, "the use was not written: the stored deadline stands")
	assert.Equal(t, uint64(1), s.TouchesDropped())

	require.NoError(t, raw.Do(ctx, "CLIENT", "UNPAUSE").Err())
	require.NoError(t, s.Close()) // waits for the held write
	u, err := raw.HGet(ctx, recordKey(prefix, token), "u").Int64()
	require.NoError(t, err)
	assert.LessOrEqual(t, u, asked.UnixMilli(), "the late write records the use as of the request")

	// TouchInterval < 0 writes every use in one round trip: held, it is
	// given up after the same bound and the token is read instead.
	every, err := redisstore.New(bare, &redisstore.Options{KeyPrefix: prefix, SweepInterval: -1, TouchInterval: -1})
	require.NoError(t, err)
	require.NoError(t, raw.Do(ctx, "CLIENT", "PAUSE", pause.Milliseconds(), "WRITE").Err())
	start := time.Now()
	_, err = every.Validate(ctx, token)
	took = time.Since(start)
	require.NoError(t, err, "the read answers")
	assert.Less(t, took, time.Second, "TouchInterval < 0: Validate waited %v for a write held %v", took, pause)
	assert.Equal(t, uint64(1), every.TouchesDropped())
	require.NoError(t, raw.Do(ctx, "CLIENT", "UNPAUSE").Err())
	require.NoError(t, every.Close())
}

// TestRestart: Redis killed (kill -9) and restarted from its AOF
// (appendfsync always) under a running store. While it is down every call
// fails with an error that is not a verdict on the token; afterwards the
// store reloads its scripts (Redis forgot them), the token issued before
// validates, and the one revoked before stays revoked.
func TestRestart(t *testing.T) {
	port, err := freePort()
	require.NoError(t, err)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	args := []string{"--port", strconv.Itoa(port), "--dir", t.TempDir(), "--appendonly", "yes", "--appendfsync", "always"}
	srv := ownRedis(t, args...)
	ctx := context.Background()
	// One dial per call: Validate while Redis is down fails at once.
	c := redis.NewClient(&redis.Options{Addr: addr, DisableIdentity: true, MaxRetries: -1, DialerRetries: 1})
	t.Cleanup(func() { _ = c.Close() })
	s, err := redisstore.New(c, &redisstore.Options{KeyPrefix: uniquePrefix(), SweepInterval: -1, Policy: tokenstore.Sliding(time.Hour, 0), TouchInterval: time.Millisecond})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	kept, info, err := s.Issue(ctx, "user")
	require.NoError(t, err)
	revoked, _, err := s.Issue(ctx, "user")
	require.NoError(t, err)
	_, err = s.Validate(ctx, kept)
	require.NoError(t, err)
	require.NoError(t, s.Revoke(ctx, revoked))

	srv.Stop()
	_, err = s.Validate(ctx, kept)
	require.Error(t, err, "Redis down")
	assert.NotErrorIs(t, err, tokenstore.ErrNotFound, "an outage is not a verdict on the token")
	assert.Contains(t, err.Error(), "redisstore: validate: ")

	ownRedis(t, args...) // the same port and AOF
	got, err := s.Validate(ctx, kept)
	require.NoError(t, err, "issued before the restart")
	assert.Equal(t, info.ID, got.ID)
	_, err = s.Validate(ctx, revoked)
	require.ErrorIs(t, err, tokenstore.ErrNotFound, "revoked before the restart")
	list, err := s.List(ctx, "user")
	require.NoError(t, err)
	assert.Len(t, list, 1)
	_, _, err = s.Rotate(ctx, kept)
	require.NoError(t, err)
}
