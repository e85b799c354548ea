package tokenstore

import (
	"errors"

	"github.com/tokenstore/tokenstore/internal/backend"
)

// Sentinel errors. Every error a [DB] method returns wraps at most one of
// these, so callers branch with [errors.Is]; the wrapping text adds context
// for the operator but never the token itself.
var (
	// ErrMalformed is returned when a string is not a well-formed token of
	// this store: wrong length, prefix, alphabet or checksum. It is decided
	// without reading the file.
	ErrMalformed = errors.New("tokenstore: malformed token")

	// ErrNotFound is returned for a well-formed token or ID that the store
	// does not hold: never issued, revoked or swept, or rotated away and
	// past the deadline it had then (before that, it is [ErrReused]).
	ErrNotFound = errors.New("tokenstore: token not found")

	// ErrExpired is returned for a token whose deadline has passed but that
	// the sweeper has not deleted yet.
	ErrExpired = errors.New("tokenstore: token has expired")

	// ErrReused is returned for a token that was rotated away and is
	// presented again after its grace: one of two parties holds a stolen
	// copy, and the store cannot tell which, so it has revoked every token
	// of the family (RFC 9700 §4.14.2, RFC 6819 §5.2.2.3). The holder must
	// authenticate again. The event is logged at Warn with the family ID.
	ErrReused = errors.New("tokenstore: token was rotated away and used again; its family is revoked")

	// ErrClosed is returned by every method called after [DB.Close].
	ErrClosed = errors.New("tokenstore: store is closed")

	// ErrLocked is returned by [Open] when another process holds the file
	// for longer than Options.LockTimeout.
	ErrLocked = errors.New("tokenstore: file is locked by another process")

	// ErrCorrupt is returned when the file is not a tokenstore file, was
	// written by a newer version, or a page or a record of it is damaged:
	// by Open, or by any method that meets the damage. The file is left
	// as it was.
	ErrCorrupt = errors.New("tokenstore: file is corrupt or not a tokenstore file")

	// ErrTokenLimit is returned by Issue when the subject already holds
	// Options.MaxTokensPerSubject live tokens. Nothing is stored.
	ErrTokenLimit = errors.New("tokenstore: subject has too many tokens")

	// ErrInvalidSubject is returned for a subject that is empty, longer than
	// 255 bytes, not valid UTF-8 or holds control characters.
	ErrInvalidSubject = errors.New("tokenstore: invalid subject")

	// ErrMetadataTooLarge is returned when a token's metadata encodes to more
	// than [MaxMetadataSize] bytes.
	ErrMetadataTooLarge = errors.New("tokenstore: metadata too large")

	// ErrInvalidPolicy is returned for a policy with a non-positive lifetime
	// or a negative cap.
	ErrInvalidPolicy = errors.New("tokenstore: invalid expiry policy")

	// ErrInvalidGrace is returned by Rotate for a grace below zero or
	// above [MaxGrace].
	ErrInvalidGrace = errors.New("tokenstore: invalid rotation grace")

	// ErrPrefixMismatch is returned by [Open] when the file records a
	// token prefix other than Options.Prefix: the store would refuse
	// every token in the file as malformed, and mix two formats in it.
	ErrPrefixMismatch = errors.New("tokenstore: token prefix mismatch")

	// ErrReadOnly is returned by methods that write when the store was opened
	// with Options.ReadOnly.
	ErrReadOnly = errors.New("tokenstore: store is read-only")
)

// wrap adds the operation to an error without repeating a package prefix:
// "tokenstore: validate: token has expired". An empty op adds only the
// prefix (see backend.OpError), as redisstore's errors do.
func wrap(op string, err error) error {
	return backend.Wrap("tokenstore", op, err)
}
