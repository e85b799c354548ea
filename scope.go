package tokenstore

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// ScopeKey is the metadata key that holds a token's scopes: scope-tokens
// separated by single spaces, as RFC 6749 §3.3 writes the scope parameter
// ("read write"). Every backend stores metadata, so every backend keeps
// scopes, and introspection (RFC 7662) can return the value as it is.
const ScopeKey = "scope"

var (
	// ErrInvalidScope is returned when a scope is not an RFC 6749 §3.3
	// scope-token (one or more printable ASCII characters other than space,
	// '"' and '\'), or when the metadata value under [ScopeKey] is neither
	// "" nor such tokens separated by single spaces. Nothing is stored.
	ErrInvalidScope = errors.New("tokenstore: invalid scope")

	// ErrInsufficientScope is passed to the error handler of [Middleware]
	// (see [WithErrorHandler]), wrapped with the scopes missing, when
	// [RequireScopes] refuses an authenticated token that lacks a scope
	// (RFC 6750 §3.1 insufficient_scope).
	ErrInsufficientScope = errors.New("tokenstore: insufficient scope")
)

// WithScopes grants the token scopes, stored under [ScopeKey] in its
// metadata, sorted and without duplicates. Scopes are case-sensitive
// (RFC 6749 §3.3); each must be a scope-token, or Issue fails with
// [ErrInvalidScope] and stores nothing. They count towards
// [MaxMetadataSize]. [DB.Rotate] keeps them, as it keeps all metadata.
//
// Options apply in order: WithScopes after [WithMetadata] adds the scopes
// to its map, while WithMetadata after WithScopes replaces the map, scopes
// included. WithScopes with no scopes removes them; a later WithScopes
// replaces an earlier one.
func WithScopes(scopes ...string) IssueOption {
	value, err := joinScopes(scopes)
	return func(o *IssueParams) {
		if err != nil {
			o.err = err
			return
		}
		if value == "" {
			delete(o.Metadata, ScopeKey)
			return
		}
		if o.Metadata == nil {
			o.Metadata = make(map[string]string, 1)
		}
		o.Metadata[ScopeKey] = value
	}
}

// joinScopes checks scopes and returns them sorted, deduplicated and
// separated by spaces.
func joinScopes(scopes []string) (string, error) {
	if err := ValidateScopes(scopes...); err != nil {
		return "", err
	}
	s := slices.Clone(scopes)
	slices.Sort(s)
	return strings.Join(slices.Compact(s), " "), nil
}

// ValidateScopes returns [ErrInvalidScope], naming the first offender,
// unless every scope is an RFC 6749 §3.3 scope-token:
//
//	scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
//
// No scopes at all is valid.
func ValidateScopes(scopes ...string) error {
	for _, s := range scopes {
		if err := validateScope(s); err != nil {
			return err
		}
	}
	return nil
}

func validateScope(s string) error {
	if s == "" {
		return fmt.Errorf("%w: empty", ErrInvalidScope)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isScopeChar(c) {
			return fmt.Errorf("%w: %q holds %s, which RFC 6749 §3.3 does not allow in a scope", ErrInvalidScope, s, describeByte(c))
		}
	}
	return nil
}

func isScopeChar(c byte) bool {
	return c == 0x21 || 0x23 <= c && c <= 0x5b || 0x5d <= c && c <= 0x7e
}

func describeByte(c byte) string {
	switch {
	case c == ' ':
		return "a space (one scope per argument)"
	case c == '"' || c == '\\':
		return fmt.Sprintf("%q", rune(c))
	case c >= 0x80:
		return "a non-ASCII character"
	default:
		return fmt.Sprintf("control character %#02x", c)
	}
}

// validateScopeValue checks a metadata value under ScopeKey: scope-tokens
// separated by single spaces (RFC 6749 §3.3: scope-token *( SP scope-token )),
// or "" for none, as applications that wrote scopes by hand have stored.
func validateScopeValue(v string) error {
	if v == "" {
		return nil
	}
	for f := range strings.SplitSeq(v, " ") {
		if f == "" {
			return fmt.Errorf("%w: metadata %q must separate scopes by single spaces, with none leading or trailing", ErrInvalidScope, ScopeKey)
		}
		if err := validateScope(f); err != nil {
			return err
		}
	}
	return nil
}

// Scopes returns the token's scopes, sorted and without duplicates; nil
// when it has none. It reads Metadata[ScopeKey], splitting at spaces (as
// [Info.HasScopes] does), so it also reads scopes written there by hand.
func (i Info) Scopes() []string {
	v := i.Metadata[ScopeKey]
	if v == "" {
		return nil
	}
	s := slices.DeleteFunc(strings.Split(v, " "), func(f string) bool { return f == "" })
	if len(s) == 0 {
		return nil
	}
	slices.Sort(s)
	return slices.Compact(s)
}

// HasScopes reports whether the token has every one of scopes (true for
// none). Scopes compare as exact, case-sensitive strings (RFC 6749 §3.3):
// "read" does not grant "Read" or "read:all". It does not allocate: it is
// meant to run on every request.
func (i Info) HasScopes(scopes ...string) bool {
	return hasScopes(i.Metadata[ScopeKey], scopes)
}

func hasScopes(granted string, scopes []string) bool {
	for _, s := range scopes {
		if !hasScope(granted, s) {
			return false
		}
	}
	return true
}

// hasScope reports whether s is one of the space-separated fields of
// granted. It searches with strings.Index, which is vectorised, rather
// than splitting granted: a scope is a few bytes in a few dozen.
func hasScope(granted, s string) bool {
	if s == "" || strings.IndexByte(s, ' ') >= 0 { // "read write" is two scopes, never one field
		return false
	}
	for off := 0; ; {
		i := strings.Index(granted[off:], s)
		if i < 0 {
			return false
		}
		i += off
		end := i + len(s)
		if (i == 0 || granted[i-1] == ' ') && (end == len(granted) || granted[end] == ' ') {
			return true
		}
		// "write" within "orders:write": look further, keeping granted
		// whole so that the field boundaries stay where they are.
		off = i + 1
	}
}

// missingScopes returns those of scopes the token lacks, for error text.
func (i Info) missingScopes(scopes []string) []string {
	var missing []string
	granted := i.Metadata[ScopeKey]
	for _, s := range scopes {
		if !hasScope(granted, s) {
			missing = append(missing, s)
		}
	}
	return missing
}
