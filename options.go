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

	// TouchInterval is how long a use may be held in memory only.
	// Validate records a use in memory and returns without writing; the
	// background writer writes every use held every TouchInterval/2 (and
	// Close the rest), so a use is in the file within TouchInterval of
	// being made, while writes succeed and each pass ends within
	// TouchInterval/2 (a disk slowed by other load stretches the bound by
	// as much). A crash (kill -9, power loss)
	// therefore loses at most the uses made in the last TouchInterval
	// before it. A lost use can only make a token expire earlier than it
	// would have, never later: the file keeps an older last use. How much
	// earlier is what the lost use moved: for a token used a second
	// earlier, a second; for a returning user's first use after days idle,
	// those days (see FsyncReturningUses). While writes fail (a full
	// disk), uses stay in memory (see CacheSize) and are written when
	// writes succeed again. Zero: 1 minute. Negative: every Validate
	// writes its use before returning (one fsync per request, shared by
	// concurrent callers).
	TouchInterval time.Duration

	// FsyncReturningUses makes a Validate of a sliding token whose stored
	// last use is TouchInterval or more behind write that use before it
	// returns (a write transaction and its fsync, shared with concurrent
	// writers). No crash can then lose a returning user's first use:
	// whatever the crash, a sliding token loses at most TouchInterval of
	// sliding. The cost is a disk write on the request path of every
	// returning user — on real traffic, most requests; on the benchmark
	// machine about 1,000 such Validates per second from 2 goroutines
	// where the default serves hundreds of thousands. Default false.
	FsyncReturningUses bool

	// LockTimeout is how long Open waits for another process to release
	// the file before it returns ErrLocked. Zero: 1 second.
	LockTimeout time.Duration

	// MaxTokensPerSubject caps a subject's live tokens: beyond it Issue
	// fails with ErrTokenLimit and stores nothing. Zero: unlimited.
	MaxTokensPerSubject int

	// CacheSize is how many decoded records are kept in memory for
	// Validate and Lookup (about 200 bytes each). Zero: 262,144.
	// Negative: none beyond uses not yet written. It is split evenly
	// over 64 shards, so it counts in multiples of 64, at least 64 when
	// positive (100 keeps 64, 1 keeps 64). A token whose use is
	// not yet written stays in memory beyond this size until the use is
	// written: at most one entry per token the file holds, about 240
	// bytes each with a 13-byte subject and no metadata, whatever the
	// traffic or the disk does (a full disk for an hour with every token
	// used: about 240 MB at 1M tokens). Open sizes the cache's tables
	// for as many records as the file holds, up to CacheSize, so that the
	// returning users after a restart fill them without rehashing. Go's
	// maps grow in steps, so that costs 50 to 100 bytes a record,
	// depending on the count (go1.26: 24 MiB at the default size, 12.1
	// MiB for 131,072 or for 200,000 records, 10.7 MiB for 229,440),
	// allocated at Open whether or not those users return, by a ReadOnly
	// Open too. A negative CacheSize reserves nothing.
	CacheSize int

	// Logger receives the sweeper's and the background writer's reports,
	// and a warning with the family ID for each rotated-away token used
	// again. So that a stolen token replayed in a loop cannot fill the
	// logs, a reuse less than a minute (on Now) after its family's last
	// line is counted, not logged, unless it revoked tokens; the family's
	// next line reports the count ("suppressed"). Nil: they are
	// discarded. Tokens are never logged.
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
