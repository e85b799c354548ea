package redisstore

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/tokenstore/tokenstore"
)

// metaField prefixes the record fields that hold metadata entries: Redis
// hashes are binary-safe, so each entry is kept as it was given.
const metaField = "m:"

// errReply is a reply of a script that does not have the expected shape:
// another program's keys under KeyPrefix, or a script of another version.
var errReply = fmt.Errorf("%w: unexpected reply from Redis", tokenstore.ErrCorrupt)

// record is the decoded form of a record hash. Times are Unix milliseconds.
type record struct {
	id       uuid.UUID
	subject  string
	created  int64
	lastUsed int64
	policy   tokenstore.Policy
	meta     map[string]string

	// Of a token made by Rotate (zero on one never rotated): its family,
	// the family's birth, whose cap no deadline passes, and, while it is
	// unused since a rotation with a grace, that grace's end (kept past
	// it: a clock set back may reopen the grace until a use ends it).
	family     uuid.UUID
	born       int64
	hasBorn    bool // born is set: 0 is a time (1970), not none
	graceUntil int64

	// Of a rotated-away token within its grace, read from its tombstone:
	// the grace's end, which caps its deadline.
	retiredGrace int64
}

// info renders the record with lastUsed as its last use.
func (r *record) info(lastUsed int64) tokenstore.Info {
	family := r.family
	if family == (uuid.UUID{}) {
		family = r.id
	}
	return tokenstore.Info{
		ID:         r.id,
		FamilyID:   family,
		Subject:    r.subject,
		CreatedAt:  time.UnixMilli(r.created),
		LastUsedAt: time.UnixMilli(lastUsed),
		ExpiresAt:  time.UnixMilli(r.deadline(lastUsed)),
		Policy:     r.policy,
		Metadata:   r.meta,
	}
}

// deadline is the scripts' deadline (see prelude): the policy's, capped
// by the family's birth + the policy's cap for a rotated token.
func (r *record) deadline(lastUsed int64) int64 {
	d := r.policy.Deadline(r.created, lastUsed)
	if r.hasBorn {
		if c := r.policy.MaxLifetime().Milliseconds(); c > 0 {
			d = min(d, r.born+c)
		}
	}
	if r.retiredGrace != 0 {
		d = min(d, r.retiredGrace)
	}
	return d
}

// encodePolicy returns the pol, ttl and max fields of p.
func encodePolicy(p tokenstore.Policy) (kind string, ttl, maxLife int64) {
	if p.IsSliding() {
		return "s", p.TTL().Milliseconds(), p.MaxLifetime().Milliseconds()
	}
	return "a", p.TTL().Milliseconds(), 0
}

func decodePolicy(kind string, ttl, maxLife int64) (tokenstore.Policy, error) {
	var p tokenstore.Policy
	switch kind {
	case "a":
		p = tokenstore.Absolute(time.Duration(ttl) * time.Millisecond)
	case "s":
		p = tokenstore.Sliding(time.Duration(ttl)*time.Millisecond, time.Duration(maxLife)*time.Millisecond)
	default:
		return p, corrupt("unknown policy kind %q", kind)
	}
	// Not p.Validate: it also refuses what a store may no longer issue
	// (idle longer than the cap) but records written before still hold.
	if ttl < 1 || maxLife < 0 {
		return p, corrupt("policy %s", p)
	}
	return p, nil
}

func corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: record: "+format, append([]any{tokenstore.ErrCorrupt}, args...)...)
}

// decodeRecord reads the flat field/value list of HGETALL.
func decodeRecord(v any) (record, error) {
	var r record
	f, ok := v.([]any)
	if !ok || len(f)%2 != 0 {
		return r, errReply
	}
	fields := make(map[string]string, 7)
	for i := 0; i < len(f); i += 2 {
		k, ok1 := f[i].(string)
		val, ok2 := f[i+1].(string)
		if !ok1 || !ok2 {
			return r, errReply
		}
		if m, ok := strings.CutPrefix(k, metaField); ok {
			if r.meta == nil {
				r.meta = make(map[string]string)
			}
			r.meta[m] = val
		} else {
			fields[k] = val
		}
	}
	var errs []error
	num := func(k string) int64 {
		n, err := strconv.ParseInt(fields[k], 10, 64)
		if err != nil {
			errs = append(errs, fmt.Errorf("field %s: %w", k, err))
		}
		return n
	}
	id, err := uuid.Parse(fields["id"])
	if err != nil {
		errs = append(errs, fmt.Errorf("field id: %w", err))
	}
	r.id = id
	r.subject = fields["sub"]
	if r.subject == "" {
		errs = append(errs, errors.New("field sub: missing"))
	}
	r.created, r.lastUsed = num("c"), num("u")
	ttl, maxLife := num("ttl"), num("max")
	if v, ok := fields["f"]; ok {
		if r.family, err = uuid.Parse(v); err != nil {
			errs = append(errs, fmt.Errorf("field f: %w", err))
		}
	}
	if _, ok := fields["b"]; ok {
		r.born, r.hasBorn = num("b"), true
	}
	if _, ok := fields["g"]; ok {
		r.graceUntil = num("g")
	}
	if err := errors.Join(errs...); err != nil {
		return r, corrupt("%v", err)
	}
	r.policy, err = decodePolicy(fields["pol"], ttl, maxLife)
	return r, err
}

// damaged is the error for a record that a script found damaged (see
// sane in scripts.go): ErrCorrupt, naming the token's ID when the record
// holds a readable one. It is never a valid token.
func damaged(fields any) error {
	rec, err := decodeRecord(fields)
	if err == nil { // decodeRecord refuses all that sane does; in case it does not
		err = corrupt("a field the store computes with is missing or not a number")
	}
	if rec.id != (uuid.UUID{}) {
		return fmt.Errorf("token %s: %w", rec.id, err)
	}
	return err
}

// head reads the first two integers of a script's reply; the second is 0
// when the reply has one element.
func head(res []any) (a, b int64, err error) {
	if len(res) == 0 {
		return 0, 0, errReply
	}
	if a, err = toInt(res[0]); err != nil || len(res) == 1 {
		return a, 0, err
	}
	b, err = toInt(res[1])
	return a, b, err
}

// toInt reads a Lua number (a Redis integer) or a numeric string.
func toInt(v any) (int64, error) {
	switch v := v.(type) {
	case int64:
		return v, nil
	case string:
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, errReply
		}
		return n, nil
	}
	return 0, errReply
}
