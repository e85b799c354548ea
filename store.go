package tokenstore

import (
	"context"
	"fmt"
	"maps"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"
)

// Store is what an application needs from a token store. [*DB] implements
// it on one bbolt file; other backends (Redis) implement the same contract,
// which the tokenstoretest package checks.
//
// Every method is safe for concurrent use. Methods that take a context
// check it before doing I/O.
type Store interface {
	// Issue creates a token for subject and returns it with its Info. The
	// token is shown once: the store keeps only its hash.
	Issue(ctx context.Context, subject string, opts ...IssueOption) (token string, info Info, err error)
	// Validate checks token and counts it as a use, sliding a sliding
	// token's deadline. Errors: ErrMalformed, ErrNotFound, ErrExpired,
	// ErrReused (a rotated-away token after its grace: see Rotate).
	Validate(ctx context.Context, token string) (Info, error)
	// Lookup answers as Validate does without counting a use.
	Lookup(ctx context.Context, token string) (Info, error)
	// Get returns the token with the given ID, expired or not; ErrNotFound
	// when there is none.
	Get(ctx context.Context, id uuid.UUID) (Info, error)
	// List returns subject's live tokens, oldest first.
	List(ctx context.Context, subject string) ([]Info, error)
	// Revoke deletes token; ErrNotFound when it is unknown or already gone.
	Revoke(ctx context.Context, token string) error
	// RevokeID deletes the token with the given ID; ErrNotFound when none.
	RevokeID(ctx context.Context, id uuid.UUID) error
	// RevokeSubject deletes every token of subject and says how many.
	RevokeSubject(ctx context.Context, subject string) (int, error)
	// Rotate issues the successor of token in token's family, with its
	// subject, policy and metadata, and retires token, atomically; see
	// [DB.Rotate] for the grace, the family's cap and reuse detection.
	// Errors: those of Validate, plus ErrReused.
	Rotate(ctx context.Context, token string, opts ...RotateOption) (string, Info, error)
	// RevokeFamily deletes every token of the family and says how many;
	// a rotated-away token of it presented later is still ErrReused.
	RevokeFamily(ctx context.Context, familyID uuid.UUID) (int, error)
	// Sweep deletes expired tokens now and says how many.
	Sweep(ctx context.Context) (int, error)
	// Stats returns counters since the store was opened.
	Stats() Stats
	// Close releases the store; later calls return ErrClosed. Calling it
	// again returns nil.
	Close() error
}

var _ Store = (*DB)(nil)

// Info describes a token. It never holds the token itself.
type Info struct {
	ID         uuid.UUID         // non-secret handle (UUIDv7): list, inspect, revoke without the token
	Subject    string            // whom the token authenticates, e.g. a user ID
	CreatedAt  time.Time         // when it was issued
	LastUsedAt time.Time         // last Validate (CreatedAt until then)
	ExpiresAt  time.Time         // the token is valid while now < ExpiresAt
	Policy     Policy            // the policy it was issued under, never zero
	Metadata   map[string]string // scopes, device name, ...; nil when none
	FamilyID   uuid.UUID         // ID of the family's first token: == ID until a Rotate (RFC 9700 §4.14.2)
}

// Stats are counters of a store since it was opened, plus the number of
// tokens in it. Counters only grow.
type Stats struct {
	Tokens int64 // tokens stored, live or expired but not yet swept

	Issued    uint64 // tokens issued (Issue, IssueBatch, Rotate)
	Validated uint64 // successful Validate calls
	Lookups   uint64 // successful Lookup and Get calls
	Revoked   uint64 // tokens deleted by Revoke, RevokeID, RevokeSubject, Rotate
	Swept     uint64 // expired tokens deleted by sweeps

	RejectedMalformed uint64 // Validate or Lookup refused: ErrMalformed
	RejectedNotFound  uint64 // ... ErrNotFound
	RejectedExpired   uint64 // ... ErrExpired
	RejectedReused    uint64 // Validate, Lookup or Rotate refused: ErrReused (each revoked a family)

	TouchWrites      uint64 // write transactions that persisted last-used times
	TouchesPersisted uint64 // last-used times written by them
	CacheHits        uint64 // Validate/Lookup answered from memory
	CacheMisses      uint64 // Validate/Lookup that read the file
}

// MaxMetadataSize is the most metadata a token may carry, in encoded bytes
// (each key and value plus a length byte or two).
const MaxMetadataSize = 4096

// MaxSubjectLen is the longest subject, in bytes.
const MaxSubjectLen = 255

// IssueParams is what [IssueOption]s set. Backends read it with
// [NewIssueParams]; applications use [WithPolicy], [WithMetadata] and
// [WithScopes].
type IssueParams struct {
	Policy   Policy            // zero: the store's default
	Metadata map[string]string // copied; nil when none

	err error // an option's own refusal, returned by NewIssueParams
}

// IssueOption adjusts one Issue call.
type IssueOption func(*IssueParams)

// WithPolicy issues the token under p instead of the store's default.
func WithPolicy(p Policy) IssueOption { return func(o *IssueParams) { o.Policy = p } }

// WithMetadata attaches m to the token. m is copied now: changing it
// afterwards changes neither the option nor any token. It is returned in
// every Info of the token and may hold at most [MaxMetadataSize] encoded
// bytes.
func WithMetadata(m map[string]string) IssueOption {
	var c map[string]string
	if len(m) > 0 {
		c = maps.Clone(m)
	}
	return func(o *IssueParams) {
		o.Metadata = maps.Clone(c) // each Issue gets its own map
	}
}

// NewIssueParams applies opts in order and checks the result.
func NewIssueParams(opts ...IssueOption) (IssueParams, error) {
	var p IssueParams
	for _, o := range opts {
		if o != nil {
			o(&p)
		}
	}
	if p.err != nil {
		return p, p.err
	}
	if err := p.Policy.Validate(); err != nil {
		return p, err
	}
	if err := ValidateMetadata(p.Metadata); err != nil {
		return p, err
	}
	return p, nil
}

// ValidateSubject returns [ErrInvalidSubject] unless s is 1 to
// [MaxSubjectLen] bytes of valid UTF-8 without control characters.
func ValidateSubject(s string) error {
	switch {
	case s == "":
		return fmt.Errorf("%w: empty", ErrInvalidSubject)
	case len(s) > MaxSubjectLen:
		return fmt.Errorf("%w: %d bytes, at most %d", ErrInvalidSubject, len(s), MaxSubjectLen)
	case !utf8.ValidString(s):
		return fmt.Errorf("%w: not valid UTF-8", ErrInvalidSubject)
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return fmt.Errorf("%w: holds control character %U", ErrInvalidSubject, r)
		}
	}
	return nil
}

// ValidateMetadata returns [ErrMetadataTooLarge] when m encodes to more than
// [MaxMetadataSize] bytes, and [ErrInvalidScope] when m[ScopeKey] is
// neither "" nor RFC 6749 scope-tokens separated by single spaces.
func ValidateMetadata(m map[string]string) error {
	if n := metadataSize(m); n > MaxMetadataSize {
		return fmt.Errorf("%w: %d bytes encoded, at most %d", ErrMetadataTooLarge, n, MaxMetadataSize)
	}
	if v, ok := m[ScopeKey]; ok {
		if err := validateScopeValue(v); err != nil {
			return err
		}
	}
	return nil
}
