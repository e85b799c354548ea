package tokenstore

import (
	"log/slog"
	"time"
)

// Options configure [Open]. A nil *Options means every default; a field's
// zero value means its default. Open copies the Options: changing them
// afterwards has no effect.
type Options struct {
	// Policy applies to tokens issued without WithPolicy.
	// Zero: Sliding(14 days, 30 days).
	Policy Policy

	// Prefix starts every token ("tks_..."), so that people and secret
	// scanners can tell what a string is. 1 to 16 lowercase letters or
	// digits, starting with a letter. Tokens of one prefix are refused by
	// a store of another as ErrMalformed.
	//
	// The file records the prefix it was created with (a file written
	// before prefixes were recorded adopts the prefix of its first
	// writable Open). Empty means the file's, and "tks" for a new file;
	// any other prefix than the file's makes Open fail with
	// ErrPrefixMismatch.
	Prefix string

	// Now is the clock. Default time.Now. Tests inject their own.
	Now func() time.Time

	// SweepInterval is how often the background sweeper deletes expired
	// tokens. Zero: 1 minute. Negative: no background sweeping ([DB.Sweep]
	// still works).
	SweepInterval time.Duration

	// TouchInterval bounds how far a token's stored last use may lag its
	// real one, which is what a crash can cost a sliding token. Uses are
	// written in the background every TouchInterval/2, and by Validate
	// itself when the stored use is TouchInterval behind. Zero: 1 minute.
	// Negative: every Validate writes (slow: one fsync per request).
	TouchInterval time.Duration

	// LockTimeout is how long Open waits for another process to release
	// the file before it returns ErrLocked. Zero: 1 second.
	LockTimeout time.Duration

	// MaxTokensPerSubject caps a subject's live tokens: beyond it Issue
	// fails with ErrTokenLimit and stores nothing. Zero: unlimited.
	MaxTokensPerSubject int

	// CacheSize is how many decoded records are kept in memory for
	// Validate and Lookup (about 200 bytes each). Zero: 262,144.
	// Negative: none beyond uses not yet written.
	CacheSize int

	// Logger receives the sweeper's and the background writer's reports.
	// Nil: they are discarded. Tokens are never logged.
	Logger *slog.Logger

	// ReadOnly opens the file with a shared lock, for reading while no
	// writer holds it. Writes return ErrReadOnly; uses seen by Validate
	// stay in memory and are never written.
	ReadOnly bool
}

const (
	defaultSweepInterval = time.Minute
	defaultTouchInterval = time.Minute
	defaultLockTimeout   = time.Second
	defaultCacheSize     = 1 << 18
)
