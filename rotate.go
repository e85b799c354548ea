package tokenstore

import (
	"fmt"
	"time"
)

// MaxGrace is the longest grace [WithGrace] accepts. A grace exists for a
// client that rotated but lost the response (GitLab added one for
// automation stranded that way); a longer one would let a stolen old token
// keep working beside the new one.
const MaxGrace = 10 * time.Minute

// RotateParams is what [RotateOption]s set. Backends read it with
// [NewRotateParams]; applications use [WithGrace] and [WithNewFamily].
type RotateParams struct {
	// Grace is how long the old token keeps working after the Rotate, and
	// during which rotating it again returns the same successor. It ends
	// early when the successor is first used. Zero: no grace.
	Grace time.Duration
	// NewFamily starts a new family with the successor: its cap counts
	// from now, and reuse of the old token no longer revokes it.
	NewFamily bool
}

// RotateOption adjusts one Rotate call.
type RotateOption func(*RotateParams)

// WithGrace keeps the old token working for d after the Rotate, or until
// the successor is first used, whichever comes first. Within it, rotating
// the old token again returns the same successor (for a client that lost
// the response), never a second one. d is at most [MaxGrace].
func WithGrace(d time.Duration) RotateOption { return func(p *RotateParams) { p.Grace = d } }

// WithNewFamily makes the successor the first token of a new family: its
// cap (Policy.MaxLifetime) counts from now instead of from the family's
// first token. Use it only where the holder has authenticated again, since
// it is the one way a rotation extends a token's life.
func WithNewFamily() RotateOption { return func(p *RotateParams) { p.NewFamily = true } }

// NewRotateParams applies opts in order and checks the result: a grace
// below zero or above [MaxGrace] is [ErrInvalidGrace].
func NewRotateParams(opts ...RotateOption) (RotateParams, error) {
	var p RotateParams
	for _, o := range opts {
		if o != nil {
			o(&p)
		}
	}
	if p.Grace < 0 || p.Grace > MaxGrace {
		return p, fmt.Errorf("%w: %s, want 0 to %s", ErrInvalidGrace, p.Grace, MaxGrace)
	}
	return p, nil
}
