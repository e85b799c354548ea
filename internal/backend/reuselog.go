package backend

import (
	"log/slog"
	"sync"
	"time"
)

// ReuseLogWindow is how long after a reuse line of a family the lines of
// its later reuses are held back (see [ReuseLog]).
const ReuseLogWindow = time.Minute

// MaxReuseLogFamilies bounds the families a [ReuseLog] keeps: about 130
// bytes each (measured: 78 bytes of map per entry, with the time of the
// family's last line and a count, after GC, plus the family ID's string,
// 48 allocated), 2 MB at most. A var for the tests.
var MaxReuseLogFamilies = 1 << 14

// ReuseLog rate-limits the Warn line a store logs for each reuse of a
// rotated-away token, per family. Each line is logged at once by the
// store that meets the reuse, so anyone holding a stolen rotated-away
// token could fill the logs by replaying it in a loop: each replay is
// ErrReused, and revokes nothing after the first. So the first reuse of
// a family logs, and its later ones within ReuseLogWindow are counted
// instead; the next line of the family after the window carries that
// count ("suppressed"). Every reuse is still counted in
// Stats.RejectedReused. A line that reports tokens revoked (force) is
// never held back: it is not a replay of one already logged, and it
// carries the count held back so far.
//
// The window runs on the store's clock (its Options.Now), so that tests
// need not wait. A clock set back before a family's last line ends its
// window: a clock stepped back must not silence a family until it has
// caught up.
//
// Memory is bounded by MaxReuseLogFamilies: past it, a new family makes
// room by dropping an arbitrary one (the first a map range yields),
// whose held-back count, if any, is logged then, so that no count is
// lost. Only new families can force that, and each costs a line anyway.
// While at most MaxReuseLogFamilies families are met per window, the
// lines stay at most about two per family met per window; past that they
// do not: a family dropped and met again within its window is new again
// and logs, so replays of more families than that, in turn, log often
// (an attacker holding that many families' stolen tokens).
//
// The zero value is ready for use; Pkg names the package in the lines it
// logs itself ("tokenstore", "redisstore").
type ReuseLog struct {
	Pkg string

	mu       sync.Mutex
	families map[string]reuseLine
}

type reuseLine struct {
	at         int64 // Unix ns of the family's last line
	suppressed int64 // its reuses not logged since
}

// Warn logs msg at Warn with the family and args for a reuse of family
// at now, unless a line of it was logged less than ReuseLogWindow before
// now and force is false, in which case it counts the reuse. A line
// logged after some were held back says how many with "suppressed".
func (l *ReuseLog) Warn(log *slog.Logger, now time.Time, family string, force bool, msg string, args ...any) {
	t := now.UnixNano()
	l.mu.Lock()
	if l.families == nil {
		l.families = make(map[string]reuseLine)
	}
	e, known := l.families[family]
	if known && !force && t >= e.at && t-e.at < int64(ReuseLogWindow) {
		e.suppressed++
		l.families[family] = e
		l.mu.Unlock()
		return
	}
	var (
		dropped     string
		droppedHeld int64
	)
	if !known && len(l.families) >= MaxReuseLogFamilies {
		for f, d := range l.families {
			delete(l.families, f)
			dropped, droppedHeld = f, d.suppressed
			break
		}
	}
	l.families[family] = reuseLine{at: t}
	l.mu.Unlock()

	// Logged outside the lock: a Logger's handler may be slow, or panic.
	if droppedHeld > 0 {
		log.Warn(l.Pkg+": tokens reused after rotation, not logged one by one (rate-limited per family)",
			"family", dropped, "suppressed", droppedHeld)
	}
	args = append([]any{"family", family}, args...)
	if e.suppressed > 0 {
		args = append(args, "suppressed", e.suppressed)
	}
	log.Warn(msg, args...)
}

// Len returns how many families l keeps, for the tests.
func (l *ReuseLog) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.families)
}
