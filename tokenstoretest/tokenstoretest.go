// Package tokenstoretest checks that a [tokenstore.Store] behaves as the
// contract says, the way testing/fstest checks an fs.FS: every backend
// (the bbolt file, Redis, yours) runs the same suite.
//
//	func TestConformance(t *testing.T) {
//		tokenstoretest.Run(t, func(t *testing.T, c tokenstoretest.Config) tokenstore.Store {
//			s, err := mybackend.Open(..., &mybackend.Options{
//				Now: c.Now, Policy: c.Policy, ... // every field of c
//			})
//			require.NoError(t, err)
//			t.Cleanup(func() { s.Close() })
//			return s
//		})
//	}
//
// The suite drives time through Config.Now with a [Clock] that starts at
// the current time and only moves forward (but in Clock/Before1970, which
// starts in 1960), so a backend that hands deadlines to a server sees
// plausible instants; every lifetime the suite uses is an hour or more,
// so no server expires a record on its own while a test runs.
package tokenstoretest

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tokenstore/tokenstore"
)

// Clock is a manual clock for Options.Now. It starts at the current time
// truncated to the millisecond (a store's resolution), or at a time of the
// test's choosing ([NewClockAt]), and moves only when [Clock.Advance] or
// [Clock.Set] is called. The conformance suite moves it forward, and back
// only where a test is about a clock set back (Family/GraceEndedStaysEnded). It is
// safe for concurrent use.
type Clock struct {
	ns atomic.Int64
}

// NewClock returns a Clock reading the current time, truncated to the
// millisecond.
func NewClock() *Clock {
	c := &Clock{}
	c.ns.Store(time.Now().Truncate(time.Millisecond).UnixNano())
	return c
}

// NewClockAt returns a Clock reading t, truncated to the millisecond: a
// fixed start makes a failing test replay with the same times.
func NewClockAt(t time.Time) *Clock {
	c := &Clock{}
	c.ns.Store(t.Truncate(time.Millisecond).UnixNano())
	return c
}

// Now returns the clock's time; pass it as Options.Now.
func (c *Clock) Now() time.Time { return time.Unix(0, c.ns.Load()) }

// Advance moves the clock forward by d and returns the new time. It panics
// when d is negative: [Clock.Set] moves it back, where a test means to.
func (c *Clock) Advance(d time.Duration) time.Time {
	if d < 0 {
		panic("tokenstoretest: Clock.Advance with a negative duration")
	}
	return time.Unix(0, c.ns.Add(int64(d)))
}

// Set moves the clock to t, earlier or later: tests of what a store does
// when the system clock is stepped back (an NTP correction) use it.
func (c *Clock) Set(t time.Time) { c.ns.Store(t.UnixNano()) }

// Config is how a test wants its store configured: the settings every
// backend shares. An [Opener] must map every field onto its backend's
// options: the suite has tests that fail when Now, Policy, Prefix,
// MaxTokensPerSubject or TouchInterval did not take effect. A zero field
// means the backend's default, as it does in tokenstore.Options.
type Config struct {
	// Now is the test's clock: every decision about time must use it.
	// Always set.
	Now func() time.Time

	// Policy applies to tokens issued without WithPolicy.
	// Zero: tokenstore.DefaultPolicy().
	Policy tokenstore.Policy

	// Prefix starts every token. "": "tks".
	Prefix string

	// MaxTokensPerSubject caps a subject's live tokens. Zero: unlimited.
	MaxTokensPerSubject int

	// TouchInterval bounds how far a token's stored last use may lag its
	// last Validate. A store writes a use either on the request path, when
	// the stored one is TouchInterval or more behind (Redis: the same round
	// trip), or in the background, never inside Validate (the file store:
	// it implements [Flusher], which the suite calls where it checks what
	// was written). Either way a sliding token, used and then left idle,
	// expires no earlier than TouchInterval before (and never after) its
	// last use plus its idle timeout. Zero: the backend's default.
	// Negative: every Validate writes its use before returning.
	TouchInterval time.Duration

	// SweepInterval is the background sweeper's period. The suite always
	// sets it negative (no background sweeper), so that only its own
	// Sweep calls delete anything.
	SweepInterval time.Duration

	// Logger receives the store's reports. The suite reads the warnings
	// of reused tokens through it (Family/ReuseLogRateLimited). Nil:
	// discarded.
	Logger *slog.Logger
}

// Flusher is a store that writes uses in the background rather than in
// Validate (*tokenstore.DB): Flush writes every use held in memory now.
type Flusher interface {
	Flush(ctx context.Context) error
}

// FileOptions maps c onto the file backend's [tokenstore.Options].
func (c Config) FileOptions() *tokenstore.Options {
	return &tokenstore.Options{
		Now:                 c.Now,
		Policy:              c.Policy,
		Prefix:              c.Prefix,
		MaxTokensPerSubject: c.MaxTokensPerSubject,
		TouchInterval:       c.TouchInterval,
		SweepInterval:       c.SweepInterval,
		Logger:              c.Logger,
	}
}

// Opener opens an empty store for one test, configured by c (see
// [Config]), and must:
//   - return a store that holds no tokens and shares nothing with any
//     store returned before (a new file, a fresh Redis key prefix);
//   - map every field of c onto the store's options;
//   - register t.Cleanup to close the store (the suite may close it first:
//     a second Close must return nil);
//   - fail t (t.Fatal) rather than return nil.
type Opener func(t *testing.T, c Config) tokenstore.Store

// Run runs every behavioural test of the [tokenstore.Store] contract
// against the stores that open returns, each as a subtest of t.
func Run(t *testing.T, open Opener) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(*testing.T, Opener)
	}{
		{"Issue/Roundtrip", testIssueRoundtrip},
		{"Issue/DefaultPolicy", testDefaultPolicy},
		{"Issue/WithPolicy", testWithPolicy},
		{"Issue/InvalidPolicy", testInvalidPolicy},
		{"Policy/Refused", testPolicyRefused},
		{"Policy/Reported", testPolicyReported},
		{"Issue/InvalidSubject", testInvalidSubject},
		{"Token/Format", testTokenFormat},
		{"Token/Malformed", testMalformed},
		{"Token/OtherVersion", testOtherVersion},
		{"Token/UnknownIsNotFound", testUnknownToken},
		{"Metadata/Roundtrip", testMetadataRoundtrip},
		{"Metadata/IsCopied", testMetadataIsCopied},
		{"Metadata/TooLarge", testMetadataTooLarge},
		{"Scopes/Roundtrip", testScopesRoundtrip},
		{"Scopes/Rotate", testScopesRotate},
		{"Scopes/Invalid", testScopesInvalid},
		{"Expiry/AbsoluteBoundary", testAbsoluteBoundary},
		{"Expiry/SlidingBoundary", testSlidingBoundary},
		{"Expiry/LookupDoesNotSlide", testLookupDoesNotSlide},
		{"Expiry/SlidingCap", testSlidingCap},
		{"Expiry/SlidingNoCap", testSlidingNoCap},
		{"Clock/Before1970", testClockBefore1970},
		{"Revoke/Immediate", testRevoke},
		{"Revoke/ByID", testRevokeID},
		{"Revoke/Subject", testRevokeSubject},
		{"Rotate", testRotate},
		{"Rotate/ExpiredOrGone", testRotateExpired},
		{"Family/IDs", testFamilyIDs},
		{"Family/ReuseRevokesFamily", testReuseRevokesFamily},
		{"Family/ReusePaths", testReusePaths},
		{"Family/ReuseLogRateLimited", testReuseLogRateLimited},
		{"Family/Grace", testGrace},
		{"Family/ReuseEndsGrace", testReuseEndsGrace},
		{"Family/GraceConcurrent", testGraceConcurrent},
		{"Family/GraceEndsAtFirstUse", testGraceEndsAtFirstUse},
		{"Family/GraceSuccessorGone", testGraceSuccessorGone},
		{"Family/GraceEndedStaysEnded", testGraceEndedStaysEnded},
		{"Family/RevokeInGrace", testRevokeInGrace},
		{"Family/CapSliding", testCapSliding},
		{"Family/CapAbsolute", testCapAbsolute},
		{"Family/NewFamily", testNewFamily},
		{"Family/RevokeFamily", testRevokeFamily},
		{"Family/TombstoneSwept", testTombstoneSwept},
		{"Family/InvalidGrace", testInvalidGrace},
		{"List", testList},
		{"Get", testGet},
		{"Limit/PerSubject", testLimit},
		{"Limit/ExpiredDoNotCount", testLimitExpired},
		{"Limit/Concurrent", testLimitConcurrent},
		{"Sweep", testSweep},
		{"Sweep/KeepsSlidTokens", testSweepKeepsSlid},
		{"Stats", testStats},
		{"Touch/Interval", testTouchInterval},
		{"Touch/EveryUse", testTouchEveryUse},
		{"Context/Cancelled", testContextCancelled},
		{"Close", testClose},
		{"Concurrent", testConcurrent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, open) })
	}
}

// env is one test's store, clock and the secrets it has seen, so that
// every error can be checked for leaking a token.
type env struct {
	t       *testing.T
	ctx     context.Context
	clock   *Clock
	cfg     Config
	s       tokenstore.Store
	secrets atomicStrings
}

// newEnv opens a store with the suite's defaults, adjusted by mod.
func newEnv(t *testing.T, open Opener, mod func(*Config)) *env {
	t.Helper()
	e := &env{t: t, ctx: t.Context(), clock: NewClock()}
	e.cfg = Config{Now: e.clock.Now, SweepInterval: -1}
	if mod != nil {
		mod(&e.cfg)
	}
	e.s = open(t, e.cfg)
	require.NotNil(t, e.s, "open returned a nil Store")
	return e
}

// issue issues a token that the test expects to succeed.
func (e *env) issue(subject string, opts ...tokenstore.IssueOption) (string, tokenstore.Info) {
	e.t.Helper()
	token, info, err := e.s.Issue(e.ctx, subject, opts...)
	require.NoError(e.t, err)
	e.secrets.add(token)
	return token, info
}

// errIs requires err to match target and to name no token the test has
// seen.
func (e *env) errIs(err, target error, msgAndArgs ...any) {
	e.t.Helper()
	require.ErrorIs(e.t, err, target, msgAndArgs...)
	e.noSecret(err)
}

// noSecret fails when err's text holds a token, or the random part of one.
func (e *env) noSecret(err error) {
	e.t.Helper()
	if e.leaks(err) {
		e.t.Fatalf("error text leaks a token: %q", err)
	}
}

// leaks reports whether err's text holds a token the test has seen, or the
// start of its random part. It is safe to call from any goroutine.
func (e *env) leaks(err error) bool {
	if err == nil {
		return false
	}
	msg := err.Error()
	for _, s := range e.secrets.all() {
		if len(s) < 8 {
			continue
		}
		// The start of the random part: a token's body starts with its
		// issue time (8 characters: tokenstore.Hash), which is no secret.
		random := s[:8]
		if _, b, ok := strings.Cut(s, "_"); ok && len(b) >= 16 {
			random = b[8:16]
		}
		if strings.Contains(msg, s) || strings.Contains(msg, random) {
			return true
		}
	}
	return false
}

// atomicStrings is an append-only list safe for concurrent use.
type atomicStrings struct {
	v atomic.Pointer[[]string]
}

func (a *atomicStrings) add(s string) {
	for {
		old := a.v.Load()
		var next []string
		if old != nil {
			next = append(next, *old...)
		}
		next = append(next, s)
		if a.v.CompareAndSwap(old, &next) {
			return
		}
	}
}

func (a *atomicStrings) all() []string {
	if p := a.v.Load(); p != nil {
		return *p
	}
	return nil
}

// sameInfo asserts that got describes the same token as want, apart from
// LastUsedAt and ExpiresAt.
func sameToken(t *testing.T, want, got tokenstore.Info) {
	t.Helper()
	assert.Equal(t, want.ID, got.ID, "ID")
	assert.Equal(t, want.Subject, got.Subject, "Subject")
	assert.True(t, want.CreatedAt.Equal(got.CreatedAt), "CreatedAt: want %v, got %v", want.CreatedAt, got.CreatedAt)
	assert.Equal(t, want.Policy, got.Policy, "Policy")
	assert.Equal(t, want.Metadata, got.Metadata, "Metadata")
}

// timeEq asserts that two instants are equal (time.Time's == compares
// locations too).
func timeEq(t *testing.T, want, got time.Time, what string) {
	t.Helper()
	assert.True(t, want.Equal(got), "%s: want %v, got %v", what, want, got)
}

// oneOf reports whether err matches one of targets.
func oneOf(err error, targets ...error) bool {
	for _, t := range targets {
		if errors.Is(err, t) {
			return true
		}
	}
	return false
}

const hour = time.Hour
