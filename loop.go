package tokenstore

import (
	"context"
	"time"

	"github.com/tokenstore/tokenstore/internal/backend"
)

// startLoop starts the store's one background goroutine, owned by Open and
// stopped by Close (internal/backend: the Redis backend runs its sweeper on
// the same loop): it sweeps expired tokens every sweepEvery and writes
// pending uses every flushEvery (either may be ≤ 0: off). Stopping it
// cancels the round in progress, so a long sweep or flush stops between
// transactions. It returns nil when both are off.
func (db *DB) startLoop(sweepEvery, flushEvery time.Duration) *backend.Loop {
	return backend.Start(
		backend.Task{Every: sweepEvery, Run: func(ctx context.Context) {
			_, _ = db.sweep(ctx) // sweep logs its own result; it has no caller to return to
		}},
		backend.Task{Every: flushEvery, Run: func(ctx context.Context) {
			if err := db.flush(ctx); err != nil && ctx.Err() == nil {
				db.log.Error("tokenstore: writing last-used times", "err", err)
			}
		}},
	)
}
