// Package logtest is what the tests of several packages share to read the
// store's logs: a buffer its goroutines may write to at once, and the
// records of slog's JSON handler. It is imported by tests and by the
// conformance suite (tokenstoretest), never by a store.
package logtest

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"testing"
)

// Buffer is a log destination safe for concurrent writers: a store logs
// from its background goroutines while a test reads.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *Buffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns what was written.
func (l *Buffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Bytes returns a copy of what was written.
func (l *Buffer) Bytes() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.b.Bytes())
}

// Take returns what was written since the last Take, and forgets it.
func (l *Buffer) Take() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	defer l.b.Reset()
	return l.b.String()
}

// Records parses text, lines written by slog's JSON handler, and returns
// the records at level ("WARN", ...), or every record when level is "".
// A line that is not JSON fails t.
func Records(t testing.TB, text, level string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for line := range strings.SplitSeq(strings.TrimSpace(text), "\n") {
		if line == "" {
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("a log line is not JSON: %v: %q", err, line)
		}
		if level == "" || rec["level"] == level {
			out = append(out, rec)
		}
	}
	return out
}
