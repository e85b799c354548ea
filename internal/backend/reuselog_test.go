package backend_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tokenstore/tokenstore/internal/backend"
)

// lines is a slog handler that keeps each record's message and
// attributes.
type lines struct {
	mu  sync.Mutex
	got []map[string]any
}

func (h *lines) Enabled(context.Context, slog.Level) bool { return true }
func (h *lines) Handle(_ context.Context, r slog.Record) error {
	m := map[string]any{"msg": r.Message, "level": r.Level.String()}
	r.Attrs(func(a slog.Attr) bool { m[a.Key] = a.Value.Any(); return true })
	h.mu.Lock()
	defer h.mu.Unlock()
	h.got = append(h.got, m)
	return nil
}
func (h *lines) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *lines) WithGroup(string) slog.Handler      { return h }

func (h *lines) take() []map[string]any {
	h.mu.Lock()
	defer h.mu.Unlock()
	got := h.got
	h.got = nil
	return got
}

// TestReuseLog: the first reuse of a family logs, the rest within the
// window are counted, and the first line after it carries their count; a
// line that reports a revocation (force) is never held back; families
// are limited apart; a clock set back ends the window.
func TestReuseLog(t *testing.T) {
	h := &lines{}
	log := slog.New(h)
	var l backend.ReuseLog
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	const msg = "x: token reused after rotation; family revoked"

	l.Warn(log, t0, "fam-a", false, msg, "revoked", 0)
	for i := range 9 {
		l.Warn(log, t0.Add(time.Duration(i)*time.Second), "fam-a", false, msg, "revoked", 0)
	}
	l.Warn(log, t0.Add(time.Second), "fam-b", false, msg, "revoked", 0)
	got := h.take()
	require.Len(t, got, 2, "one line per family within the window: 10 reuses of a, 1 of b")
	assert.Equal(t, "fam-a", got[0]["family"])
	assert.NotContains(t, got[0], "suppressed", "nothing held back before the first")
	assert.Equal(t, "fam-b", got[1]["family"])
	assert.Equal(t, "WARN", got[0]["level"])

	l.Warn(log, t0.Add(backend.ReuseLogWindow-time.Nanosecond), "fam-a", false, msg, "revoked", 0)
	assert.Empty(t, h.take(), "still within the window")
	l.Warn(log, t0.Add(backend.ReuseLogWindow), "fam-a", false, msg, "revoked", 0)
	got = h.take()
	require.Len(t, got, 1, "after the window")
	assert.Equal(t, int64(10), got[0]["suppressed"], "the 10 held back")
	assert.Equal(t, int64(0), got[0]["revoked"], "the caller's attributes")
	assert.Equal(t, msg, got[0]["msg"])

	t1 := t0.Add(backend.ReuseLogWindow)
	l.Warn(log, t1.Add(time.Second), "fam-a", false, msg, "revoked", 0)
	l.Warn(log, t1.Add(2*time.Second), "fam-a", true, msg, "revoked", 3)
	got = h.take()
	require.Len(t, got, 1, "a revocation is logged within the window")
	assert.Equal(t, int64(3), got[0]["revoked"])
	assert.Equal(t, int64(1), got[0]["suppressed"])

	l.Warn(log, t1.Add(3*time.Second), "fam-a", false, msg)
	assert.Empty(t, h.take(), "the forced line started a window")
	l.Warn(log, t0.Add(-time.Hour), "fam-a", false, msg)
	got = h.take()
	require.Len(t, got, 1, "a clock set back ends the window")
	assert.Equal(t, int64(1), got[0]["suppressed"])
}

// TestReuseLog_Bounded: past MaxReuseLogFamilies a new family drops
// another, whose held-back count is logged then, not lost.
func TestReuseLog_Bounded(t *testing.T) {
	const limit = 4
	old := backend.MaxReuseLogFamilies
	backend.MaxReuseLogFamilies = limit
	t.Cleanup(func() { backend.MaxReuseLogFamilies = old })
	h := &lines{}
	log := slog.New(h)
	l := backend.ReuseLog{Pkg: "x"}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range limit {
		fam := fmt.Sprint("fam-", i)
		l.Warn(log, now, fam, false, "reused")
		l.Warn(log, now, fam, false, "reused") // held back
	}
	require.Len(t, h.take(), limit)
	var held int64
	for i := range 3 * limit {
		l.Warn(log, now, fmt.Sprint("new-", i), false, "reused")
		assert.LessOrEqual(t, l.Len(), limit, "memory bounded")
		for _, line := range h.take() {
			if s, ok := line["suppressed"]; ok {
				assert.Contains(t, line["msg"], "x: tokens reused after rotation, not logged one by one")
				held += s.(int64)
			}
		}
	}
	// Those not dropped give their count after the window.
	for i := range limit {
		l.Warn(log, now.Add(backend.ReuseLogWindow), fmt.Sprint("fam-", i), false, "reused")
	}
	for _, line := range h.take() {
		if s, ok := line["suppressed"]; ok {
			held += s.(int64)
		}
	}
	assert.Equal(t, int64(limit), held, "every count held back is logged: as its family is dropped, or after the window")
}
