package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"

	"github.com/tokenstore/tokenstore"
	"github.com/tokenstore/tokenstore/internal/backend"
)

// ErrOutOfMemory is returned by the calls that write (Issue, Rotate, and
// the rest where Redis refuses them) when Redis has reached its maxmemory
// and may not evict (maxmemory-policy noeviction, or a volatile-* policy
// with no key left to evict). Nothing was written. Validate and Lookup
// keep answering: a use that cannot be written is dropped and counted
// ([Store.TouchesDropped]); Revoke, RevokeID and RevokeSubject only
// delete, which Redis allows when full.
var ErrOutOfMemory = errors.New("redisstore: Redis is out of memory")

// inflight tracks the calls that went on running on Redis after their
// context ended (see [Store.do]), so that Close can wait for them.
type inflight struct {
	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup
}

func (f *inflight) enter() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return false
	}
	f.wg.Add(1)
	return true
}

func (f *inflight) close() {
	f.mu.Lock()
	f.closed = true
	f.mu.Unlock()
	f.wg.Wait()
}

// do runs call and returns its reply, or ctx's error as soon as ctx ends,
// whichever comes first: a call returns within its context's deadline
// however the client is configured. go-redis bounds a socket read by the
// context only with Options.ContextTimeoutEnabled; without it, a Redis
// that stalls holds the caller until the client's ReadTimeout (3 s by
// default, or forever). When ctx ends first, the command goes on in the
// background until Redis answers or the client gives up (Close waits for
// it); whether it took effect is unknown, as with any call cut short.
func (s *Store) do(ctx context.Context, call func(context.Context) *redis.Cmd) *redis.Cmd {
	if ctx.Done() == nil {
		return misfit(call(ctx)) // cannot end: the client's own timeouts bound it
	}
	if !s.calls.enter() {
		return errCmd(ctx, tokenstore.ErrClosed)
	}
	reply := make(chan *redis.Cmd, 1)
	go func() {
		defer s.calls.wg.Done()
		reply <- call(ctx)
	}()
	select {
	case cmd := <-reply:
		return misfit(cmd)
	case <-ctx.Done():
		select {
		case cmd := <-reply: // both ready: the answer wins
			return misfit(cmd)
		default:
			return errCmd(ctx, ctx.Err())
		}
	}
}

// misfit turns a script's "DAMAGED <message>" error reply, for a key of
// the store's key space holding another Redis type than its kind's (see
// try in scripts.go), into tokenstore.ErrCorrupt with that message, and
// "BROKEN <message>", for a key of its kind's type without the fields
// the scripts read (a tombstone: see tomb), likewise.
func misfit(cmd *redis.Cmd) *redis.Cmd {
	err := cmd.Err()
	switch {
	case redis.HasErrorPrefix(err, "DAMAGED"):
		cmd.SetErr(misfitErr(strings.TrimPrefix(err.Error(), "DAMAGED ")))
	case redis.HasErrorPrefix(err, "BROKEN"):
		cmd.SetErr(fmt.Errorf("%w: %s (damage, or another program's key under the KeyPrefix)", tokenstore.ErrCorrupt, strings.TrimPrefix(err.Error(), "BROKEN ")))
	}
	return cmd
}

// misfitErr is ErrCorrupt for a key of another type, msg naming it.
func misfitErr(msg string) error {
	return fmt.Errorf("%w: %s (a key of another Redis type under the KeyPrefix: damage, or another program's key)", tokenstore.ErrCorrupt, msg)
}

func errCmd(ctx context.Context, err error) *redis.Cmd {
	cmd := redis.NewCmd(ctx)
	cmd.SetErr(err)
	return cmd
}

// run runs a script that may write.
func (s *Store) run(ctx context.Context, script *redis.Script, keys []string, args ...any) *redis.Cmd {
	return s.do(ctx, func(ctx context.Context) *redis.Cmd {
		return script.Run(ctx, s.rdb, keys, args...)
	})
}

// read runs a read-only script with EVALSHA_RO (Redis 7.0+), which a
// replica and a Redis out of memory both accept, or, on a Redis without
// it, compat, the same script without the no-writes flag, with EVALSHA.
func (s *Store) read(ctx context.Context, ro, compat *redis.Script, keys []string, args ...any) *redis.Cmd {
	if !s.noRO.Load() {
		cmd := s.do(ctx, func(ctx context.Context) *redis.Cmd {
			return ro.RunRO(ctx, s.rdb, keys, args...)
		})
		if !unknownCommand(cmd.Err()) {
			return cmd
		}
		s.noRO.Store(true)
		s.log.Info("redisstore: Redis has no EVALSHA_RO (before 7.0, or renamed): read-only scripts run with EVALSHA")
	}
	return s.run(ctx, compat, keys, args...)
}

func unknownCommand(err error) bool {
	if err == nil {
		return false
	}
	msg := strings.ToLower(err.Error())
	return strings.Contains(msg, "unknown command") && strings.Contains(msg, "_ro")
}

// wrap names the operation and the package in err, once, and turns
// Redis's refusals into sentinels: a closed client into
// tokenstore.ErrClosed, a full Redis into ErrOutOfMemory, a replica, or a
// primary short of its min-replicas-to-write, into tokenstore.ErrReadOnly,
// each with Redis's own words after it.
func wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	return backend.Wrap("redisstore", op, refusal(err))
}

// refusal turns Redis's refusals into sentinels, as wrap does, without
// naming the operation: for an error that wrap names later.
func refusal(err error) error {
	switch {
	case errors.Is(err, redis.ErrClosed):
		err = fmt.Errorf("%w (%v)", tokenstore.ErrClosed, err)
	case redis.HasErrorPrefix(err, "OOM"):
		err = fmt.Errorf("%w (used memory is at maxmemory and the maxmemory-policy cannot evict; nothing was written): %v", ErrOutOfMemory, err)
	case redis.HasErrorPrefix(err, "READONLY"):
		err = fmt.Errorf("%w: connected to a read-only replica, not the primary (after a failover, or a client pointed at a replica): %v", tokenstore.ErrReadOnly, err)
	case redis.HasErrorPrefix(err, "NOREPLICAS"):
		err = fmt.Errorf("%w: the primary refuses writes while fewer replicas than its min-replicas-to-write are connected and in sync (nothing was written): %v", tokenstore.ErrReadOnly, err)
	}
	return err
}
