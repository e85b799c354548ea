// Package redisstore is a [tokenstore.Store] on Redis, for applications
// that run as several instances: a token issued by one validates on all,
// and a revocation holds everywhere as soon as it returns.
//
// # Basics
//
// Make a go-redis client (any [redis.UniversalClient]: a single server, a
// Sentinel-managed primary, a Cluster), then a [Store] on it with [New];
// use it as a [*tokenstore.DB] is used. Tokens look alike, are hashed
// alike and expire by the same policies, on the same arithmetic.
//
//	rdb := redis.NewClient(&redis.Options{
//		Addr:                  "localhost:6379",
//		ContextTimeoutEnabled: true, // a call cut short frees its connection at once
//	})
//	store, err := redisstore.New(rdb, &redisstore.Options{Policy: tokenstore.Sliding(time.Hour, 30*24*time.Hour)})
//	...
//	token, info, err := store.Issue(ctx, "user-42")
//	info, err = store.Validate(ctx, token) // on any instance
//
// Every call returns by its context's deadline, however the client is
// configured; with ContextTimeoutEnabled the client also abandons the
// stalled read then, instead of at its ReadTimeout (3 s by default).
//
// # Keys
//
// Under Options.KeyPrefix (P, default "tokenstore:"), for a token whose
// [tokenstore.Hash] is H (64 hex digits) and whose ID is I:
//
//	P t:H          hash: id, sub, c (created ms), u (last use ms), pol (a|s), ttl, max (ms), m:<key> per metadata entry;
//	               made by Rotate, also f (family ID), b (the family's birth ms), g (grace end, until first used)
//	P i:I          string: H
//	P s:<subject>  sorted set: H scored by deadline (ms)
//	P e            sorted set: H‖subject scored by deadline: what Sweep walks, and Stats.Tokens
//	P r:H          hash: the tombstone of a rotated-away token: fam, next (successor's H), ge (grace end ms), d (deadline ms)
//	P f:F          hash: family F's live token (h: H) and rotated-away token in its grace (g: H)
//	P rotation-key string: the HMAC-SHA256 key of the successors Rotate makes within a grace
//
// The token itself is never stored. The record and the ID key expire in
// Redis (PEXPIREAT; with Options.Now, PEXPIRE by its clock)
// Options.KeepExpired after the token's deadline, moved on by every
// written slide; until then the token reports
// [tokenstore.ErrExpired], as the file store does until its sweeper runs.
// [Store.Sweep] (every Options.SweepInterval, on each instance) deletes
// expired tokens with their index entries; List (when Redis takes
// writes), and Issue under a limit, also drop the index entries of records
// that Redis has expired.
//
// A token is valid only while its record, its ID key and its subject
// index entry are all in place: every way to revoke it reaches it. So an
// eviction, under any maxmemory-policy, can lose tokens (their users log
// in again) but never leave one valid that RevokeID, RevokeSubject or the
// per-subject limit cannot reach. A token made by Rotate also needs its
// family key naming it, so that RevokeFamily and reuse detection reach it.
//
// # Families
//
// [Store.Rotate] keeps a tombstone of the token it retires until that
// token's own deadline (Redis expires it there: it costs no sweep, and is
// not counted in Stats.Tokens). A rotated-away token presented after its
// grace is [tokenstore.ErrReused], and the script that finds it so revokes
// its family, logging a warning with the family ID (a replay within a
// minute of its family's last warning is counted, not logged: see
// Options.Logger). See docs/redis.md,
// "Families", for what an eviction or a failover can cost them.
//
// # Guarantees
//
// Every call that changes a token is one Lua script: atomic, one round
// trip. The per-subject limit is checked in the script that adds the
// token, so concurrent Issues on any number of instances cannot pass it
// together; Rotate and RevokeSubject are atomic (RevokeSubject in chunks
// of 1,000 tokens). Times come from one clock: Options.Now when set, else
// Redis's TIME, never the instances' own clocks. (Token IDs are UUIDv7s
// from the issuing instance's clock; only their uniqueness matters.)
//
// A use is written once per Options.TouchInterval (1 minute by default),
// as on the file store: a Validate whose token's stored use is fresher
// runs a read-only script (EVALSHA_RO, Redis 7.0+), which writes nothing
// to the AOF or the replicas; the one after it checks, slides within the
// cap and re-files the token in one script. A sliding token, used and then
// left idle, may so expire up to TouchInterval early, never late.
//
// Durability is Redis's: a token is as durable as Redis's persistence
// settings make its writes, and Redis replicates asynchronously, so a
// failover can lose the last writes the old primary acknowledged (see
// docs/redis.md for what each fault costs).
//
// # Caveats
//
// A network call can fail after Redis has run it: when a call's context
// ends, or the connection breaks, while its script is in flight, its change
// may or may not have been made (an Issue whose token the caller never
// gets simply expires). Errors other than the sentinels mean Redis could
// not answer: refuse the request, but do not tell the client its token is
// bad. A Redis out of memory fails Issue and Rotate with [ErrOutOfMemory],
// a replica fails them with [tokenstore.ErrReadOnly]; Validate keeps
// answering from its read on both, but for a successor's first use after
// a rotation with a grace, which a replica refuses (see [Store.Validate]),
// and a reused token, refused as [tokenstore.ErrReused] although a
// replica cannot revoke its family (see docs/redis.md).
//
// A key under KeyPrefix that holds another Redis type than the store
// puts there (damage, or another program's key) is never reported as
// Redis's WRONGTYPE, and costs only the tokens it concerns. A record, ID
// key, subject index, expiry index or tombstone of another type is
// reported as [tokenstore.ErrCorrupt] naming the kind of key, by every
// call that meets it (List, ForEach and Sweep go on past it and report
// it); so is a tombstone without the fields the store reads, and a
// rotation key of another type, by Rotate with a grace. A rotated-away
// token whose tombstone is damaged so is ErrCorrupt for Validate, Lookup,
// Rotate and Revoke, never taken for an unknown token (its reuse would
// then go undetected), until the key is deleted (the error names it by
// the start of its hash) or expires; RevokeFamily goes on past it. A
// family key of another type stands for no token instead: the family's
// live token fails closed as [tokenstore.ErrNotFound] (RevokeFamily could
// not reach it), and Rotate replaces such a key.
//
// Requires Redis 6.2 or later (7.0 for the read-only path; 6.2 reads with
// EVALSHA). In Redis Cluster a store's keys must live in one slot, since
// its scripts touch several: KeyPrefix must hold a hash tag such as
// "{tokenstore}:", which puts the whole store on one shard. A go-redis
// Ring is refused: it moves a shard's keys to another while the shard is
// down, so a revocation made then is lost when it comes back.
package redisstore

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/tokenstore/tokenstore"
	"github.com/tokenstore/tokenstore/internal/backend"
)

// Options configure [New]. A nil *Options means every default; a field's
// zero value means its default. New copies the Options.
type Options struct {
	// KeyPrefix starts every key the store uses. Default "tokenstore:".
	// Stores that share a Redis and a KeyPrefix share their tokens: that
	// is how the instances of one application see one store. In Redis
	// Cluster it must hold a hash tag, e.g. "{tokenstore}:".
	//
	// It must end with ":" and hold no ":s:", or [New] refuses it with
	// [ErrInvalidKeyPrefix]: a store keeps each subject's index under
	// KeyPrefix + "s:" + the subject, whatever the subject, so a store whose
	// KeyPrefix is another's followed by "s:" ("app:" and "app:s:", or
	// "app" and "apps:") would have all its keys among the other's subject
	// keys, and each would read, sweep and delete the other's. Under this
	// rule the keys of two stores with different KeyPrefixes never meet,
	// however the prefixes nest ("app:" and "app:x:" are both fine).
	KeyPrefix string

	// Policy applies to tokens issued without WithPolicy.
	// Zero: [tokenstore.DefaultPolicy], Sliding(14 days, 30 days).
	Policy tokenstore.Policy

	// Prefix starts every token, as tokenstore.Options.Prefix does.
	// Default "tks". Every instance must use the same one.
	Prefix string

	// Now is the clock, for tests. Nil: Redis's clock (TIME), read by the
	// scripts themselves, so that instances whose clocks disagree still
	// agree on every deadline. Any time works here, before 1970 too, as on
	// the file store: every deadline is on this clock, and Redis, which
	// expires the keys on its own clock, is given each key's remaining
	// life at each write (PEXPIRE, not PEXPIREAT), so a clock that
	// disagrees with Redis's neither has keys dropped at once (behind it)
	// nor kept long past their time (ahead of it) counted from the write.
	// A clock set back after a write is not followed: Redis still counts
	// the keys' lives from that write, and no use writes again until the
	// clock passes the last use, so a clock set back by more than
	// KeepExpired has Redis drop a token's keys before the store's
	// deadline (the token is then ErrNotFound, never valid without them).
	Now func() time.Time

	// MaxTokensPerSubject caps a subject's live tokens: beyond it Issue
	// fails with ErrTokenLimit and stores nothing. Zero: unlimited.
	MaxTokensPerSubject int

	// TouchInterval bounds how far a token's stored last use may lag its
	// last Validate. A Validate whose token's stored use is fresher runs a
	// read-only script (EVALSHA_RO) and writes nothing; one whose stored
	// use is TouchInterval behind writes the use, sliding the token, before
	// it returns. So a use costs a write once per TouchInterval, not once
	// per request, and a sliding token, used then left idle, expires up to
	// TouchInterval before its last use + idle timeout, never after. For
	// each token the interval is at most half its idle timeout, so that a
	// token in use never expires. Zero: 1 minute. Negative: every Validate
	// writes.
	TouchInterval time.Duration

	// KeepExpired is how long Redis keeps a token past its deadline before
	// expiring its keys itself; until then, or until a sweep deletes it,
	// the token reports ErrExpired (not ErrNotFound), Get shows it and
	// RevokeSubject counts it. Zero: 1 hour. Negative: none, the keys
	// expire at the deadline.
	KeepExpired time.Duration

	// SweepInterval is how often this Store sweeps expired tokens out of
	// the indexes in the background. Zero: 1 minute. Negative: never
	// ([Store.Sweep] still works); then something must call Sweep, or the
	// indexes keep an entry per expired token.
	SweepInterval time.Duration

	// ReplicaReads accepts a cluster client that sends read-only commands
	// to replicas (ClusterOptions.ReadOnly, RouteByLatency or
	// RouteRandomly), which New otherwise refuses: Validate and Lookup then
	// read from replicas, and a revoked token keeps validating there for as
	// long as replication lags (usually milliseconds; unbounded while a
	// replica is cut off).
	ReplicaReads bool

	// Logger receives the background sweeper's reports, and a warning
	// with the family ID for each rotated-away token used again (its
	// family is revoked). So that a stolen token replayed in a loop cannot
	// fill the logs, a reuse less than a minute (on Now, else the
	// instance's clock) after its family's last line is counted, not
	// logged, unless it revoked tokens; the family's next line reports the
	// count ("suppressed"). Nil: discarded. Tokens and their hashes are
	// never logged.
	Logger *slog.Logger
}

const (
	defaultKeyPrefix     = "tokenstore:"
	defaultKeepExpired   = time.Hour
	defaultSweepInterval = time.Minute
	defaultTouchInterval = time.Minute

	// chunk bounds the tokens one sweep or RevokeSubject script deletes,
	// so that Redis, which runs one script at a time, never stalls long.
	chunk = 1000

	// statsTimeout bounds the round trip of Stats, which has no context.
	statsTimeout = time.Second
)

// Store is a token store on Redis. It is safe for simultaneous use by
// multiple goroutines, and any number of Stores, in any number of
// processes, may share one Redis and KeyPrefix. Make one with [New].
type Store struct {
	rdb    redis.UniversalClient
	prefix string // KeyPrefix
	format tokenstore.Format
	policy tokenstore.Policy
	now    func() time.Time // nil: Redis's TIME
	limit  int
	keep   string // KeepExpired in ms, as a script argument
	log    *slog.Logger

	touch int64 // TouchInterval in ms; < 0: every use is written

	closed atomic.Bool
	loop   *backend.Loop // the background sweeper; nil when off
	calls  inflight      // calls left running on Redis by their context
	noRO   atomic.Bool   // Redis lacks EVALSHA_RO: read with EVALSHA

	refusedUntil atomic.Int64 // Unix ns: until then Validate writes no use (see writeFailed)

	rotationKey atomic.Pointer[[]byte] // the HMAC key of grace successors, once read (see successor)
	reusedHere  sync.Map               // tokenstore.Hash → family: reuses whose revocation Redis did not take (see reuse)
	reusedCount atomic.Int64           // entries in reusedHere (see remember)
	reuseLog    backend.ReuseLog       // the reuse warnings, rate-limited per family

	ctr       counters
	lastCount atomic.Int64
	damaged   sync.Map // ids of damaged records a sweep has reported
}

type counters struct {
	issued, validated, lookups, revoked, swept atomic.Uint64
	malformed, notFound, expired, reused       atomic.Uint64
	touches, dropped                           atomic.Uint64
}

var _ tokenstore.Store = (*Store)(nil)

// New returns a Store on client, which it uses but does not own: close the
// client after [Store.Close]. It takes *redis.Client (also from
// NewFailoverClient, for Sentinel) and *redis.ClusterClient, the latter
// with a hash tag in KeyPrefix and without replica reads unless
// Options.ReplicaReads accepts them. It refuses *redis.Ring: a Ring sends
// a shard's keys to another shard while its heartbeat finds the shard down,
// so a RevokeSubject made then finds nothing (0, no error) and the tokens
// it was meant to revoke validate again when the shard comes back. A store
// lives on one shard anyway (one hash tag): give it a *redis.Client of
// that shard, or use Sentinel or Cluster for failover. opts may be nil. New does no I/O;
// the first call reaches Redis. It starts the background sweeper unless
// Options.SweepInterval is negative.
func New(client redis.UniversalClient, opts *Options) (*Store, error) {
	if client == nil {
		return nil, errors.New("redisstore: nil client")
	}
	var o Options
	if opts != nil {
		o = *opts
	}
	format, err := tokenstore.NewFormat(o.Prefix)
	if err != nil {
		return nil, err
	}
	if o.Policy.IsZero() {
		o.Policy = tokenstore.DefaultPolicy()
	}
	if err := o.Policy.Validate(); err != nil {
		return nil, fmt.Errorf("redisstore: Options.Policy: %w", err)
	}
	if o.KeyPrefix == "" {
		o.KeyPrefix = defaultKeyPrefix
	}
	if err := checkKeyPrefix(o.KeyPrefix); err != nil {
		return nil, err
	}
	switch c := client.(type) {
	case *redis.ClusterClient:
		if co := c.Options(); (co.ReadOnly || co.RouteByLatency || co.RouteRandomly) && !o.ReplicaReads {
			return nil, errors.New("redisstore: the cluster client sends read-only commands to replicas (ClusterOptions.ReadOnly, RouteByLatency or RouteRandomly): a token revoked on the primary would validate on a replica until replication catches up; use a client without them, or set Options.ReplicaReads to accept that")
		}
		if !hasHashTag(o.KeyPrefix) {
			return nil, fmt.Errorf("redisstore: KeyPrefix %q has no hash tag: on a cluster every key must be in one slot (use e.g. %q)", o.KeyPrefix, "{tokenstore}:")
		}
	case *redis.Ring:
		return nil, errors.New("redisstore: a go-redis Ring is not supported: while its heartbeat finds a shard down it sends that shard's keys to another, so a revocation made then is lost when the shard comes back and the revoked tokens validate again; a store lives on one shard anyway: use a redis.Client of that shard, or Sentinel or Cluster for failover")
	}
	switch {
	case o.KeepExpired == 0:
		o.KeepExpired = defaultKeepExpired
	case o.KeepExpired < 0:
		o.KeepExpired = 0
	}
	if o.SweepInterval == 0 {
		o.SweepInterval = defaultSweepInterval
	}
	if o.TouchInterval == 0 {
		o.TouchInterval = defaultTouchInterval
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Store{
		rdb:    client,
		prefix: o.KeyPrefix,
		format: format,
		policy: o.Policy,
		now:    o.Now,
		limit:  max(o.MaxTokensPerSubject, 0),
		keep:   strconv.FormatInt(o.KeepExpired.Milliseconds(), 10),
		log:    o.Logger,
		touch:  o.TouchInterval.Milliseconds(),
	}
	if o.TouchInterval < 0 {
		s.touch = -1
	}
	s.reuseLog.Pkg = "redisstore"
	s.loop = backend.Start(backend.Task{Every: o.SweepInterval, Run: s.backgroundSweep})
	return s, nil
}

// ErrInvalidKeyPrefix is returned by [New] for an Options.KeyPrefix that
// does not end with ":" or holds ":s:": another store's keys could then
// be among its own (see Options.KeyPrefix).
var ErrInvalidKeyPrefix = errors.New("redisstore: invalid KeyPrefix")

// checkKeyPrefix holds KeyPrefix to the rule that keeps two stores' keys
// apart. Every key is the prefix + one of "t:", "i:", "s:", "r:", "f:"
// then a hash, a UUID or a subject, or + "e" or "rotation-key". For a key
// of a store with prefix P to be one of a store with prefix P+X, X must
// begin one of P's key suffixes. With both prefixes ending in ":", X ends
// in ":" too, and the only suffix with a ":" past its first two bytes is
// a subject key's: X would begin with "s:", so P+X holds ":s:".
func checkKeyPrefix(p string) error {
	switch {
	case !strings.HasSuffix(p, ":"):
		return fmt.Errorf("%w %q: it must end with \":\" (as the default %q does), or a store whose KeyPrefix is this one followed by \"s:\" would have its keys among this store's subject indexes (KeyPrefix + \"s:\" + subject)", ErrInvalidKeyPrefix, p, defaultKeyPrefix)
	case strings.Contains(p, ":s:"):
		outer, _, _ := strings.Cut(p, ":s:")
		return fmt.Errorf("%w %q: it holds \":s:\", so its keys are among the subject indexes (KeyPrefix + \"s:\" + subject) of a store with KeyPrefix %q: the two would read, sweep and delete each other's keys", ErrInvalidKeyPrefix, p, outer+":")
	}
	return nil
}

// hasHashTag reports whether key has a non-empty {tag}, which Redis
// Cluster hashes instead of the whole key.
func hasHashTag(key string) bool {
	_, after, ok := strings.Cut(key, "{")
	if !ok {
		return false
	}
	end := strings.IndexByte(after, '}')
	return end > 0
}

// Close stops the background sweeper and waits for it, and for calls whose
// context ended while Redis had not answered (they end when it answers or
// the client's ReadTimeout passes; with ContextTimeoutEnabled, at their
// context's deadline). On a client without either (ReadTimeout -1 or -2)
// and a Redis that never answers, Close waits as long. Afterwards every
// other method returns [tokenstore.ErrClosed]; Close itself returns nil,
// however often it is called. It does not close the client.
func (s *Store) Close() error {
	s.closed.Store(true)
	s.loop.Stop()
	s.calls.close()
	return nil
}

// begin is the common entry check of every method.
func (s *Store) begin(ctx context.Context) error {
	if s.closed.Load() {
		return tokenstore.ErrClosed
	}
	return ctx.Err()
}

// nowArg is the scripts' now argument: "" asks them for Redis's TIME.
func (s *Store) nowArg() string {
	if s.now == nil {
		return ""
	}
	return strconv.FormatInt(s.now().UnixMilli(), 10)
}

// clock is the issue time a new token carries (tokenstore.Hash): Options.Now,
// else this instance's clock. Only the token's key order and what its
// holder reads from it follow it; deadlines come from nowArg.
func (s *Store) clock() time.Time {
	if s.now == nil {
		return time.Now()
	}
	return s.now()
}

func (s *Store) recordKey(h tokenstore.Hash) string {
	return s.prefix + "t:" + hex.EncodeToString(h[:])
}
func (s *Store) idKey(id uuid.UUID) string        { return s.prefix + "i:" + id.String() }
func (s *Store) subjectKey(subject string) string { return s.prefix + "s:" + subject }
func (s *Store) expiryKey() string                { return s.prefix + "e" }

// Issue creates a token for subject under the store's policy, or the one
// given by [tokenstore.WithPolicy], and returns it with its Info. The token
// is shown only here: Redis keeps its hash.
func (s *Store) Issue(ctx context.Context, subject string, opts ...tokenstore.IssueOption) (string, tokenstore.Info, error) {
	if err := s.begin(ctx); err != nil {
		return "", tokenstore.Info{}, wrap("issue", err)
	}
	if err := tokenstore.ValidateSubject(subject); err != nil {
		return "", tokenstore.Info{}, err
	}
	p, err := tokenstore.NewIssueParams(opts...)
	if err != nil {
		return "", tokenstore.Info{}, err
	}
	if p.Policy.IsZero() {
		p.Policy = s.policy
	}
	id, err := uuid.NewV7()
	if err != nil {
		return "", tokenstore.Info{}, wrap("issue: new id", err)
	}
	token, h := s.format.GenerateAt(s.clock())
	kind, ttl, maxLife := encodePolicy(p.Policy)
	args := make([]any, 0, 9+2*len(p.Metadata))
	args = append(args, s.nowArg(), s.prefix, s.keep, s.limit, id.String(), subject, kind, ttl, maxLife)
	for k, v := range p.Metadata {
		args = append(args, metaField+k, v)
	}
	res, err := s.run(ctx, issueScript, []string{s.recordKey(h), s.subjectKey(subject)}, args...).Slice()
	if err != nil {
		return "", tokenstore.Info{}, wrap("issue", err)
	}
	status, n, err := head(res) // n: the creation time, or the live tokens
	if err != nil {
		return "", tokenstore.Info{}, wrap("issue", err)
	}
	if status == -2 {
		return "", tokenstore.Info{}, wrap("issue", fmt.Errorf("%w: %d live tokens, limit %d", tokenstore.ErrTokenLimit, n, s.limit))
	}
	now := n
	s.ctr.issued.Add(1)
	rec := record{id: id, subject: subject, created: now, lastUsed: now, policy: p.Policy, meta: p.Metadata}
	return token, rec.info(now), nil
}

// Validate checks token and counts it as a use. A use is written to Redis
// once per Options.TouchInterval: when the token's stored last use is
// that far behind, Validate writes it (sliding a sliding token's deadline
// to now + idle, within its cap) before it returns, so every instance sees
// it; otherwise it only reads, with a read-only script, and the Info it
// returns is the stored one (LastUsedAt and ExpiresAt up to TouchInterval
// behind). It returns [tokenstore.ErrMalformed] (decided without a round
// trip), [tokenstore.ErrNotFound] (unknown, revoked, gone, or with an
// index entry evicted), [tokenstore.ErrExpired], [tokenstore.ErrReused]
// (a token rotated away and presented after its grace: its family is
// revoked, see [Store.Rotate]) or, for a damaged record (never valid),
// [tokenstore.ErrCorrupt] naming its ID. A token rotated away within its
// grace validates with its own Info, ExpiresAt at the grace's end at the
// latest, and writes nothing; a successor's first use after a rotation
// with a grace is written, whatever TouchInterval says, since it ends the
// grace (also after the grace's end by the clock, which may be set back
// into it).
//
// A Validate whose read succeeds answers from it even when the use cannot
// be written (Redis out of memory, a read-only replica, a deadline reached
// between the two, a write Redis holds for more than 250 ms, as during a
// FAILOVER, whatever ctx allows): the use is dropped and counted by
// [Store.TouchesDropped], and the token expires up to TouchInterval
// earlier than it would have. After Redis refuses or holds one (OOM,
// READONLY, NOREPLICAS, 250 ms), Validate stops trying for a second,
// logging one warning,
// so that a full Redis is not asked for a doomed write per request. A full
// Redis costs writes, not authentication.
//
// The one use that is never answered from the read alone is a successor's
// first use after a rotation with a grace: it must end the grace by a
// write, or the old token would keep working after it. When Redis takes
// neither the use write nor the grace's own (a delete, which a full Redis
// takes), Validate fails closed with an error that wraps Redis's refusal
// ([tokenstore.ErrReadOnly], [ErrOutOfMemory], or a timeout) and says the
// grace could not be ended.
func (s *Store) Validate(ctx context.Context, token string) (tokenstore.Info, error) {
	return s.check(ctx, token, true)
}

// Lookup answers as [Store.Validate] does without counting a use. It
// writes only to end a grace: the first Lookup of a successor made by a
// Rotate with a grace records that use, also after the grace's end by the
// clock, which may be set back into it, and fails closed, as Validate
// does, when Redis does not take that write (a reuse found by Lookup
// revokes the family, as Validate's does).
func (s *Store) Lookup(ctx context.Context, token string) (tokenstore.Info, error) {
	return s.check(ctx, token, false)
}

func (s *Store) check(ctx context.Context, token string, use bool) (tokenstore.Info, error) {
	op := "lookup"
	if use {
		op = "validate"
	}
	if err := s.begin(ctx); err != nil {
		return tokenstore.Info{}, wrap(op, err)
	}
	h, err := s.format.Parse(token)
	if err != nil {
		s.ctr.malformed.Add(1)
		return tokenstore.Info{}, err
	}
	var info tokenstore.Info
	if fam, known := s.reusedHere.Load(h); known {
		// Found reused before, its family not revoked (see reuse).
		err = s.reuse(ctx, h, fam.(string))
	} else if use {
		info, err = s.use(ctx, h)
	} else {
		var rec record
		if rec, _, err = s.readToken(ctx, h); err == nil {
			info, err = s.fromRead(ctx, h, rec)
		}
	}
	if rf := (*reuseFound)(nil); errors.As(err, &rf) {
		err = s.reuse(ctx, h, rf.family)
	}
	switch {
	case errors.Is(err, tokenstore.ErrReused):
		// Counted by reuse or touchUse, with the tokens revoked.
	case errors.Is(err, tokenstore.ErrNotFound):
		s.ctr.notFound.Add(1)
	case errors.Is(err, tokenstore.ErrExpired):
		s.ctr.expired.Add(1)
	case err != nil:
	case use:
		s.ctr.validated.Add(1)
	default:
		s.ctr.lookups.Add(1)
	}
	if err != nil {
		return tokenstore.Info{}, wrap(op, err)
	}
	return info, nil
}

// use answers Validate: it reads the token, and writes the use when it is
// due (or always, when TouchInterval < 0) and Redis takes writes. When the
// write fails, the read answers.
func (s *Store) use(ctx context.Context, h tokenstore.Hash) (tokenstore.Info, error) {
	if s.touch < 0 {
		if s.writesRefused() {
			s.ctr.dropped.Add(1)
		} else {
			// Check and write in one round trip, bounded as a use write is
			// (see useWriteTimeout). A write Redis holds and runs late
			// takes its time as the use: only a read first would know
			// better, and that is what TouchInterval >= 0 does.
			wctx, cancel := context.WithTimeout(ctx, useWriteTimeout)
			info, err := s.touchUse(wctx, h, 0, s.nowArg())
			stalled := wctx.Err() != nil // before cancel, after which it is always set
			cancel()
			if err == nil || verdict(err) || ctx.Err() != nil {
				return info, err
			}
			s.writeFailed(err, stalled)
		}
		rec, _, err := s.readToken(ctx, h)
		if err != nil {
			return tokenstore.Info{}, err
		}
		return s.fromRead(ctx, h, rec)
	}
	rec, now, err := s.readToken(ctx, h)
	// A rotated-away token in its grace is answered, never written; a
	// successor unused since its rotation with a grace is written
	// whatever its last use, to end the grace: also past the grace's end
	// by the clock, which may be set back into it.
	firstUse := err == nil && rec.graceUntil != 0
	if err != nil || rec.retiredGrace != 0 || now-rec.lastUsed < s.touchFor(rec.policy) && !firstUse {
		return rec.info(rec.lastUsed), err
	}
	if s.writesRefused() {
		s.ctr.dropped.Add(1)
		return s.fromRead(ctx, h, rec)
	}
	// The use is written as of the read (now), not of whenever Redis
	// runs the write: a write that Redis holds (CLIENT PAUSE WRITE, a
	// FAILOVER) and runs late must not slide the token past its real use.
	wctx, cancel := context.WithTimeout(ctx, useWriteTimeout)
	defer cancel()
	minAge := s.touchFor(rec.policy)
	if firstUse {
		minAge = 0
	}
	info, err := s.touchUse(wctx, h, minAge, strconv.FormatInt(now, 10))
	if err == nil || verdict(err) {
		// Written, or revoked, expired or damaged since the read: the
		// later answer holds.
		return info, err
	}
	s.writeFailed(err, wctx.Err() != nil && ctx.Err() == nil)
	return s.fromRead(ctx, h, rec)
}

// fromRead answers a use of h that was not written (a Lookup, or a use
// write skipped or refused) from rec, its read. A successor unused since
// a rotation with a grace is answered only once firstUse has ended that
// grace, also past its end by the clock, which may be set back into it:
// a full Redis takes that write where it refuses use writes.
func (s *Store) fromRead(ctx context.Context, h tokenstore.Hash, rec record) (tokenstore.Info, error) {
	if rec.graceUntil != 0 {
		if err := s.firstUse(ctx, h); err != nil {
			return tokenstore.Info{}, err
		}
	}
	return rec.info(rec.lastUsed), nil
}

// useWriteTimeout bounds the write of a use, whatever the caller's
// context allows (an HTTP request's has no deadline): Validate already has
// its answer from the read, and a Redis that holds writes (CLIENT PAUSE
// WRITE during a FAILOVER, a primary stalled on its disk) must cost the
// request at most this, not the length of the stall.
const useWriteTimeout = 250 * time.Millisecond

// verdict reports whether err is an answer about the token (not found,
// expired, damaged) rather than a failure to reach Redis.
func verdict(err error) bool {
	return errors.Is(err, tokenstore.ErrNotFound) || errors.Is(err, tokenstore.ErrExpired) ||
		errors.Is(err, tokenstore.ErrCorrupt) || errors.Is(err, tokenstore.ErrReused)
}

// refusedFor is how long Validate stops trying to write uses after Redis
// refused one (out of memory, a replica, a primary short of the replicas
// min-replicas-to-write asks for) or held one past useWriteTimeout: the
// writes would fail too, and each would cost a round trip (or the wait).
const refusedFor = time.Second

// writesRefused reports whether Redis refused a write less than refusedFor
// ago.
func (s *Store) writesRefused() bool {
	return time.Now().UnixNano() < s.refusedUntil.Load()
}

// writeFailed counts a use Validate could not write, and, when Redis
// refused it or held it past useWriteTimeout (stalled), stops use writes
// for refusedFor, logging once.
func (s *Store) writeFailed(err error, stalled bool) {
	s.ctr.dropped.Add(1)
	if stalled {
		err = fmt.Errorf("no answer to a write within %v: %w", useWriteTimeout, err)
	} else if !redis.HasErrorPrefix(err, "OOM") && !redis.HasErrorPrefix(err, "READONLY") && !redis.HasErrorPrefix(err, "NOREPLICAS") {
		s.log.Debug("redisstore: writing a use failed; the token's deadline stays where it was", "err", err)
		return
	}
	now := time.Now()
	if prev := s.refusedUntil.Swap(now.Add(refusedFor).UnixNano()); prev < now.UnixNano() {
		s.log.Warn("redisstore: Redis refuses writes; Validate answers from reads and drops uses", "for", refusedFor, "err", err)
	}
}

// touchFor is how far behind a token's stored use may be before a use is
// written: TouchInterval, but at most half a sliding token's idle timeout,
// so that a token in use never expires for want of a write.
func (s *Store) touchFor(p tokenstore.Policy) int64 {
	if p.IsSliding() {
		return min(s.touch, p.TTL().Milliseconds()/2)
	}
	return s.touch
}

// readToken reads h's record without writing, and Redis's now (or the
// injected clock's).
func (s *Store) readToken(ctx context.Context, h tokenstore.Hash) (record, int64, error) {
	res, err := s.read(ctx, readScript, readCompat, []string{s.recordKey(h)}, s.nowArg(), s.prefix).Slice()
	if err != nil {
		return record{}, 0, err
	}
	status, now, err := head(res)
	switch {
	case err != nil:
		return record{}, 0, err
	case status == -4:
		fam := ""
		if len(res) == 3 {
			fam, _ = res[2].(string)
		}
		return record{}, 0, &reuseFound{family: fam}
	case status == 2:
		rec, err := retiredInGrace(res)
		return rec, now, err
	case status == 0:
		return record{}, 0, tokenstore.ErrNotFound
	case status == -1:
		return record{}, 0, tokenstore.ErrExpired
	case len(res) != 3:
		return record{}, 0, errReply
	case status == -3:
		return record{}, 0, damaged(res[2])
	}
	rec, err := decodeRecord(res[2])
	return rec, now, err
}

// touchUse checks h's token and writes now as its last use.
// at is the use's time, as the scripts' now argument ("" for Redis's TIME
// when the script runs).
//
// minAge is how old the stored use must be for this one to be written: a
// Validate that found the use due may find, in the script, that another
// wrote it since.
func (s *Store) touchUse(ctx context.Context, h tokenstore.Hash, minAge int64, at string) (tokenstore.Info, error) {
	res, err := s.run(ctx, touchScript, []string{s.recordKey(h)}, at, s.prefix, s.keep, minAge).Slice()
	if err != nil {
		return tokenstore.Info{}, err
	}
	status, _, err := head(res)
	switch {
	case err != nil:
		return tokenstore.Info{}, err
	case status == -4:
		return tokenstore.Info{}, s.reused(res)
	case status == 2:
		rec, err := retiredInGrace(res)
		return rec.info(rec.lastUsed), err
	case status == 0:
		return tokenstore.Info{}, tokenstore.ErrNotFound
	case status == -1:
		return tokenstore.Info{}, tokenstore.ErrExpired
	case status == -3 && len(res) == 3:
		return tokenstore.Info{}, damaged(res[2])
	case len(res) != 5:
		return tokenstore.Info{}, errReply
	}
	used, err1 := toInt(res[2])
	wrote, err2 := toInt(res[3])
	rec, err3 := decodeRecord(res[4])
	if err := errors.Join(err1, err2, err3); err != nil {
		return tokenstore.Info{}, err
	}
	if wrote == 1 {
		s.ctr.touches.Add(1)
	}
	return rec.info(used), nil
}

// Get returns the token with the given ID. For a token past its deadline
// that is not deleted yet it returns the Info and [tokenstore.ErrExpired];
// for none, [tokenstore.ErrNotFound].
func (s *Store) Get(ctx context.Context, id uuid.UUID) (tokenstore.Info, error) {
	op := "get " + id.String()
	if err := s.begin(ctx); err != nil {
		return tokenstore.Info{}, wrap(op, err)
	}
	res, err := s.read(ctx, getScript, getCompat, []string{s.idKey(id)}, s.nowArg(), s.prefix).Slice()
	if err != nil {
		return tokenstore.Info{}, wrap(op, err)
	}
	status, now, err := head(res)
	switch {
	case err != nil:
		return tokenstore.Info{}, wrap(op, err)
	case status == 0:
		return tokenstore.Info{}, wrap(op, tokenstore.ErrNotFound)
	case len(res) != 3:
		return tokenstore.Info{}, wrap(op, errReply)
	case status == -3:
		return tokenstore.Info{}, wrap(op, damaged(res[2]))
	}
	rec, err := decodeRecord(res[2])
	if err != nil {
		return tokenstore.Info{}, wrap(op, err)
	}
	info := rec.info(rec.lastUsed)
	if now >= info.ExpiresAt.UnixMilli() {
		return info, wrap(op, tokenstore.ErrExpired)
	}
	s.ctr.lookups.Add(1)
	return info, nil
}

// List returns subject's live tokens, oldest first. An unknown subject has
// none: List returns an empty slice and no error.
func (s *Store) List(ctx context.Context, subject string) ([]tokenstore.Info, error) {
	if err := s.begin(ctx); err != nil {
		return nil, wrap("list", err)
	}
	if err := tokenstore.ValidateSubject(subject); err != nil {
		return nil, err
	}
	key := s.subjectKey(subject)
	res, err := s.read(ctx, listScript, listCompat, []string{key}, s.nowArg(), s.prefix, subject).Slice()
	if err != nil {
		return nil, wrap("list", err)
	}
	if len(res) != 4 {
		return nil, wrap("list", errReply)
	}
	now, err := toInt(res[0])
	recs, ok1 := res[1].([]any)
	stale, ok2 := res[2].([]any)
	msgs, ok3 := res[3].([]any)
	if err != nil || !ok1 || !ok2 || !ok3 {
		return nil, wrap("list", errReply)
	}
	if len(stale) > 0 {
		// Best effort: a replica, or a Redis holding writes, keeps them
		// for the next List, Issue under a limit, or Sweep.
		// Bounded as a use write is (see useWriteTimeout).
		pctx, cancel := context.WithTimeout(ctx, useWriteTimeout)
		args := append([]any{s.prefix}, stale...)
		err := s.run(pctx, pruneScript, []string{key}, args...).Err()
		cancel()
		if err != nil {
			s.log.Debug("redisstore: list: pruning index entries of expired records failed", "err", err)
		}
	}
	out := make([]tokenstore.Info, 0, len(recs))
	var bad []error // a damaged record costs only itself
	for _, m := range msgs {
		bad = append(bad, misfitErr(fmt.Sprint(m)))
	}
	for _, f := range recs {
		rec, err := decodeRecord(f)
		if err != nil {
			if rec.id != (uuid.UUID{}) {
				err = fmt.Errorf("token %s: %w", rec.id, err)
			}
			bad = append(bad, err)
			continue
		}
		if info := rec.info(rec.lastUsed); now < info.ExpiresAt.UnixMilli() {
			out = append(out, info)
		}
	}
	slices.SortFunc(out, func(a, b tokenstore.Info) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(string(a.ID[:]), string(b.ID[:]))
	})
	return out, wrap("list", errors.Join(bad...))
}

// Revoke deletes token at once: when it returns, no instance accepts the
// token. It returns [tokenstore.ErrNotFound] for a token the store does not
// hold (never issued, or already revoked).
//
// A token rotated away and within its grace (see [Store.Rotate]), which
// Validate accepts, is revoked too, in the same script: its successor,
// which no one has used, is deleted with it, and so is its tombstone, so
// that the token is then [tokenstore.ErrNotFound] everywhere, as any
// revoked token (not [tokenstore.ErrReused]: a client that lost Rotate's
// answer and logs out, or retries its logout, is not taken for a thief,
// and leaves no live token behind; RFC 7009 §2.1). Rotated away and out
// of its grace (or its successor used), it is ErrNotFound, and Revoke
// revokes nothing. This is the file store's [tokenstore.DB.Revoke].
func (s *Store) Revoke(ctx context.Context, token string) error {
	if err := s.begin(ctx); err != nil {
		return wrap("revoke", err)
	}
	h, err := s.format.Parse(token)
	if err != nil {
		return err
	}
	n, err := s.run(ctx, revokeScript, []string{s.recordKey(h)}, s.prefix, s.nowArg()).Int64()
	if err != nil {
		return wrap("revoke", err)
	}
	if n == 0 {
		return wrap("revoke", tokenstore.ErrNotFound)
	}
	s.ctr.revoked.Add(1)
	return nil
}

// RevokeID deletes the token with the given ID. It returns
// [tokenstore.ErrNotFound] when there is none.
func (s *Store) RevokeID(ctx context.Context, id uuid.UUID) error {
	op := "revoke " + id.String()
	if err := s.begin(ctx); err != nil {
		return wrap(op, err)
	}
	n, err := s.run(ctx, revokeIDScript, []string{s.idKey(id)}, s.prefix).Int64()
	if err != nil {
		return wrap(op, err)
	}
	if n == 0 {
		return wrap(op, tokenstore.ErrNotFound)
	}
	s.ctr.revoked.Add(1)
	return nil
}

// RevokeSubject deletes every token of subject ("log out everywhere"),
// expired ones included, and returns how many there were. Up to 1,000
// tokens go in one atomic script; a subject with more is revoked in
// several, checking ctx between them.
func (s *Store) RevokeSubject(ctx context.Context, subject string) (int, error) {
	if err := s.begin(ctx); err != nil {
		return 0, wrap("revoke subject", err)
	}
	if err := tokenstore.ValidateSubject(subject); err != nil {
		return 0, err
	}
	total := 0
	for {
		res, err := s.run(ctx, revokeSubjectScript, []string{s.subjectKey(subject)}, s.prefix, subject, chunk).Slice()
		if err != nil {
			return total, wrap("revoke subject", err)
		}
		n, left, err := head(res)
		if err != nil {
			return total, wrap("revoke subject", err)
		}
		total += int(n)
		s.ctr.revoked.Add(uint64(n))
		if left == 0 {
			return total, nil
		}
		if err := ctx.Err(); err != nil {
			return total, wrap("revoke subject", err)
		}
	}
}

// Stats returns the store's counters, which count this Store's calls only,
// and the number of tokens in Redis (live, or expired and not swept yet),
// read with one round trip of at most a second; when that fails, and after
// Close, it reports the last count it read. TouchWrites and
// TouchesPersisted both count the Validate calls that wrote a use (one
// write each); CacheHits and CacheMisses stay zero: there is no cache.
func (s *Store) Stats() tokenstore.Stats {
	if !s.closed.Load() {
		s.lastCount.Store(s.count())
	}
	c := &s.ctr
	return tokenstore.Stats{
		Tokens:            s.lastCount.Load(),
		Issued:            c.issued.Load(),
		Validated:         c.validated.Load(),
		Lookups:           c.lookups.Load(),
		Revoked:           c.revoked.Load(),
		Swept:             c.swept.Load(),
		RejectedMalformed: c.malformed.Load(),
		RejectedNotFound:  c.notFound.Load(),
		RejectedExpired:   c.expired.Load(),
		RejectedReused:    c.reused.Load(),
		TouchWrites:       c.touches.Load(),
		TouchesPersisted:  c.touches.Load(),
	}
}

// TouchesDropped counts the uses this Store's Validate calls could not
// write (Redis out of memory, a read-only replica, a deadline reached
// between the read and the write) and answered from the read anyway. Each
// costs the token at most TouchInterval of sliding; a count that grows
// means Redis refuses writes.
func (s *Store) TouchesDropped() uint64 { return s.ctr.dropped.Load() }

// count reads the size of the expiry index, or returns the last count.
func (s *Store) count() int64 {
	ctx, cancel := context.WithTimeout(context.Background(), statsTimeout)
	defer cancel()
	n, err := s.do(ctx, func(ctx context.Context) *redis.Cmd {
		return s.rdb.Do(ctx, "ZCARD", s.expiryKey())
	}).Int64()
	if err != nil {
		return s.lastCount.Load()
	}
	return n
}
