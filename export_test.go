package tokenstore

import "time"

// SetWriteWaitHook has f told, for every later call through db's
// committer (Issue, Revoke, a use written, each sweep and flush
// transaction: solo), how long it waited for its transaction to begin.
// Call it before any write. For the benchmarks (bench_test.go).
func SetWriteWaitHook(db *DB, f func(wait time.Duration, solo bool)) {
	db.commit.onWait = f
}

// DropCleanCache drops every cached record whose last use is written
// (clean), as eviction would, and keeps those with a use not yet written:
// so that two runs a benchmark compares start from the same cache. For
// the benchmarks (bench_test.go: benchFlush).
func (db *DB) DropCleanCache() {
	for i := range db.cache.shards {
		s := &db.cache.shards[i]
		s.mu.Lock()
		if !s.hold {
			for h, e := range s.m {
				if !e.dirty() {
					delete(s.m, h)
				}
			}
		}
		s.mu.Unlock()
	}
}
