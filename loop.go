package tokenstore

import (
	"context"
	"time"
)

// loop is the store's one background goroutine, owned by Open and Close:
// it sweeps expired tokens every sweepEvery and writes pending uses every
// flushEvery (either may be ≤ 0: off). Close cancels ctx, so a long sweep
// stops between chunks, then closes stop and waits for done.
func (db *DB) loop(ctx context.Context, sweepEvery, flushEvery time.Duration) {
	defer close(db.done)
	var sweepC, flushC <-chan time.Time
	if sweepEvery > 0 {
		t := time.NewTicker(sweepEvery)
		defer t.Stop()
		sweepC = t.C
	}
	if flushEvery > 0 {
		t := time.NewTicker(flushEvery)
		defer t.Stop()
		flushC = t.C
	}
	for {
		select {
		case <-db.stop:
			return
		case <-sweepC:
			// Sweep logs its own result; it has no caller to return to.
			_, _ = db.sweep(ctx)
		case <-flushC:
			if err := db.flush(ctx, true); err != nil && ctx.Err() == nil {
				db.log.Error("tokenstore: writing last-used times", "err", err)
			}
		}
	}
}
