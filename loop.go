package tokenstore

import (
	"context"
	"sync"
	"time"
)

// loop runs the store's background work, owned by Open and Close: the
// sweeper every sweepEvery and the writer of pending uses every flushEvery
// (either may be ≤ 0: off), each in a goroutine of its own, so that a long
// sweep (a mass expiry on 1M tokens takes tens of seconds) never holds
// back the writer past TouchInterval: they share only bbolt's writer lock,
// which each takes for transactions of about txTarget. Close cancels ctx,
// so a long sweep or flush stops between chunks, then closes stop and
// waits for done, closed once both have ended.
func (db *DB) loop(ctx context.Context, sweepEvery, flushEvery time.Duration) {
	defer close(db.done)
	var wg sync.WaitGroup
	if sweepEvery > 0 {
		wg.Go(func() {
			db.every(sweepEvery, func() {
				// Sweep logs its own result; it has no caller to return to.
				_, _ = db.sweep(ctx)
			})
		})
	}
	if flushEvery > 0 {
		wg.Go(func() {
			db.every(flushEvery, func() {
				if err := db.flush(ctx); err != nil && ctx.Err() == nil {
					db.log.Error("tokenstore: writing last-used times", "err", err)
				}
			})
		})
	}
	wg.Wait()
}

// every runs fn every d until stop is closed.
func (db *DB) every(d time.Duration, fn func()) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-db.stop:
			return
		case <-t.C:
			fn()
		}
	}
}
