package tokenstore

import (
	"fmt"
	"strings"
	"time"
)

// Policy says when a token dies. Build one with [Absolute] or [Sliding];
// the zero Policy means "the store's default" (Options.Policy, and
// Sliding(14 days, 30 days) when that is zero too).
//
// A Policy is a small value: copy it freely. Its arithmetic works on
// absolute Unix milliseconds, so a restart or a process that was down for a
// week never extends a lifetime.
type Policy struct {
	kind policyKind
	ttl  time.Duration // absolute: lifetime; sliding: idle timeout
	max  time.Duration // sliding only: hard cap after creation, 0 for none
}

type policyKind uint8

const (
	kindDefault policyKind = iota
	kindAbsolute
	kindSliding
)

const day = 24 * time.Hour

// defaultPolicy is what a zero Options.Policy means.
var defaultPolicy = Sliding(14*day, 30*day)

// DefaultPolicy returns the policy that a zero Options.Policy stands for,
// Sliding(14 days, 30 days), so that every backend defaults alike.
func DefaultPolicy() Policy { return defaultPolicy }

// Absolute returns a policy under which a token dies ttl after it was
// issued, however often it is used. For a token made by [DB.Rotate] that
// is ttl after its family's first token was issued: rotation never
// extends an absolute lifetime, and a successor has the first token's
// ExpiresAt (unless rotated with [WithNewFamily], which starts the count
// again).
func Absolute(ttl time.Duration) Policy {
	return Policy{kind: kindAbsolute, ttl: ttl}
}

// Sliding returns a policy under which a token dies idle after its last use,
// and never lives past its creation plus maxLifetime (0: no cap).
//
// The cap counts from the creation of the token's family's first token:
// [DB.Rotate] restarts the idle window (the successor lives until
// min(now + idle, first token's creation + maxLifetime)) but never
// extends the cap, however often the holder rotates (OWASP's absolute
// timeout). Only [WithNewFamily] starts a new cap, from now.
func Sliding(idle, maxLifetime time.Duration) Policy {
	return Policy{kind: kindSliding, ttl: idle, max: maxLifetime}
}

// IsZero reports whether p is the zero Policy, which stands for a default.
func (p Policy) IsZero() bool { return p.kind == kindDefault }

// IsSliding reports whether p extends a token's life on each use.
func (p Policy) IsSliding() bool { return p.kind == kindSliding }

// TTL is the lifetime of an absolute policy, or the idle timeout of a
// sliding one.
func (p Policy) TTL() time.Duration { return p.ttl }

// MaxLifetime is a sliding policy's cap after creation (0: none); an
// absolute policy reports its TTL.
func (p Policy) MaxLifetime() time.Duration {
	if p.kind == kindAbsolute {
		return p.ttl
	}
	return p.max
}

// String renders p as "absolute(24h0m0s)" or "sliding(idle=1h0m0s, max=720h0m0s)".
func (p Policy) String() string {
	switch p.kind {
	case kindAbsolute:
		return fmt.Sprintf("absolute(%s)", p.ttl)
	case kindSliding:
		if p.max == 0 {
			return fmt.Sprintf("sliding(idle=%s)", p.ttl)
		}
		return fmt.Sprintf("sliding(idle=%s, max=%s)", p.ttl, p.max)
	}
	return "default"
}

// Validate reports, as [ErrInvalidPolicy], a policy that a store could not
// keep exactly as it says. Stores keep durations in whole milliseconds, and
// every store refuses, with a message that says why:
//   - a lifetime or idle timeout under 1ms, or a negative cap: no token
//     could live by it;
//   - a duration that is not a whole number of milliseconds: 1500µs would
//     be kept as 1ms, and a cap of 500µs as no cap at all (a units slip,
//     such as time.Duration(30) meant as 30 days, gives such values);
//   - a sliding policy whose idle timeout is longer than its cap: no use
//     could ever extend the token, and [Absolute] with the cap says so.
//
// Every other policy is stored as it is, and every Info of a token issued
// under it reports it unchanged.
func (p Policy) Validate() error {
	switch {
	case p.kind == kindDefault:
		return nil
	case p.kind != kindAbsolute && p.kind != kindSliding:
		return fmt.Errorf("%w: unknown kind %d", ErrInvalidPolicy, p.kind)
	}
	what := "lifetime"
	if p.kind == kindSliding {
		what = "idle timeout"
	}
	switch {
	case p.ttl < time.Millisecond:
		return fmt.Errorf("%w: %s: %s must be at least 1ms, the store's resolution", ErrInvalidPolicy, p, what)
	case p.ttl%time.Millisecond != 0:
		return fmt.Errorf("%w: %s: %s %s is not a whole number of milliseconds, the store's resolution", ErrInvalidPolicy, p, what, p.ttl)
	case p.max < 0:
		return fmt.Errorf("%w: %s: negative max lifetime", ErrInvalidPolicy, p)
	case p.max > 0 && p.max < time.Millisecond:
		return fmt.Errorf("%w: %s: max lifetime must be 0 (no cap) or at least 1ms, the store's resolution", ErrInvalidPolicy, p)
	case p.max%time.Millisecond != 0:
		return fmt.Errorf("%w: %s: max lifetime %s is not a whole number of milliseconds, the store's resolution", ErrInvalidPolicy, p, p.max)
	case p.max > 0 && p.ttl > p.max:
		return fmt.Errorf("%w: %s: idle timeout %s is longer than the max lifetime %s, so no use could extend a token: use Absolute(%s)", ErrInvalidPolicy, p, p.ttl, p.max, p.max)
	}
	return nil
}

// Deadline returns the instant at which a token created at createdMs and
// last used at lastUsedMs (Unix milliseconds) stops being valid: it is valid
// while now < Deadline. For a token made by Rotate, createdMs is the
// creation of its family's first token, which the cap counts from.
func (p Policy) Deadline(createdMs, lastUsedMs int64) int64 {
	if p.kind == kindAbsolute {
		return createdMs + p.ttl.Milliseconds()
	}
	d := lastUsedMs + p.ttl.Milliseconds()
	if p.max > 0 {
		d = min(d, createdMs+p.max.Milliseconds())
	}
	return d
}

// ExpiresAt is [Policy.Deadline] on times.
func (p Policy) ExpiresAt(created, lastUsed time.Time) time.Time {
	return time.UnixMilli(p.Deadline(created.UnixMilli(), lastUsed.UnixMilli()))
}

// ParsePolicy reads what [Policy.String] writes, for command-line tools
// and configuration: "absolute(24h)", "sliding(idle=1h)",
// "sliding(idle=1h, max=720h)".
func ParsePolicy(s string) (Policy, error) {
	bad := func() (Policy, error) {
		return Policy{}, fmt.Errorf("%w: cannot parse %q", ErrInvalidPolicy, s)
	}
	name, args, ok := strings.Cut(strings.TrimSuffix(strings.TrimSpace(s), ")"), "(")
	if !ok {
		if s == "default" {
			return Policy{}, nil
		}
		return bad()
	}
	switch name {
	case "absolute":
		d, err := time.ParseDuration(strings.TrimSpace(args))
		if err != nil {
			return bad()
		}
		p := Absolute(d)
		return p, p.Validate()
	case "sliding":
		var p = Policy{kind: kindSliding}
		for _, part := range strings.Split(args, ",") {
			k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
			d, err := time.ParseDuration(v)
			if !ok || err != nil {
				return bad()
			}
			switch k {
			case "idle":
				p.ttl = d
			case "max":
				p.max = d
			default:
				return bad()
			}
		}
		return p, p.Validate()
	}
	return bad()
}
