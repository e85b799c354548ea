package tokenstore

import (
	"context"
	"time"

	"github.com/tokenstore/tokenstore/internal/backend"
)

// startLoops starts the store's background goroutines, owned by Open and
// stopped by Close (internal/backend: the Redis backend runs its sweeper on
// the same Loop): the sweeper every sweepEvery and the writer of pending
// uses every flushEvery (either may be ≤ 0: off, and nil). They are two
// Loops, not two Tasks of one, because a Loop runs one round at a time: a
// long sweep (a mass expiry on 1M tokens takes tens of seconds) held the
// writer back past TouchInterval. They share only bbolt's writer lock,
// which each takes for transactions of about txTarget. Stopping one
// cancels its round in progress, so a long sweep or flush stops between
// transactions.
func (db *DB) startLoops(sweepEvery, flushEvery time.Duration) (sweeper, writer *backend.Loop) {
	sweeper = backend.Start(backend.Task{Every: sweepEvery, Run: func(ctx context.Context) {
		_, _ = db.sweep(ctx) // sweep logs its own result; it has no caller to return to
	}})
	writer = backend.Start(backend.Task{Every: flushEvery, Run: func(ctx context.Context) {
		if err := db.flush(ctx, true); err != nil && ctx.Err() == nil { // paced: see flush
			db.log.Error("tokenstore: writing last-used times", "err", err)
		}
	}})
	return sweeper, writer
}
