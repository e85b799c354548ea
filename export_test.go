package tokenstore

import "time"

// SetWriteWaitHook has f told, for every later call through db's
// committer (Issue, Revoke, a use written, each sweep and flush
// transaction: solo), how long it waited for its transaction to begin.
// Call it before any write. For the benchmarks (bench_test.go).
func SetWriteWaitHook(db *DB, f func(wait time.Duration, solo bool)) {
	db.commit.onWait = f
}
