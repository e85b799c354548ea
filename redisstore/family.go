package redisstore

import (
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/tokenstore/tokenstore"
)

// Rotate issues the successor of token, with its subject, policy,
// metadata and family, and retires token, in one script: afterwards
// exactly one of the two works, on every instance (both, within a grace).
// The successor's life starts now, but no deadline of the family passes
// its first token's creation + the policy's cap (the absolute lifetime, or
// the sliding cap); [tokenstore.WithNewFamily] starts a new family, whose
// cap counts from now.
//
// The retired token leaves a tombstone (its hash, the family, the
// successor), kept until its own deadline as of the rotation. Presented
// again after its grace, to Validate, Lookup or Rotate, it is
// [tokenstore.ErrReused], and the same script revokes every live token of
// its family (RFC 9700 §4.14.2): one of two parties holds a stolen copy.
//
// With [tokenstore.WithGrace](d), token keeps working for d, or until the
// successor is first used (Validate, Lookup or Rotate), and rotating it
// again meanwhile returns the same successor, never a second one: the
// successor is an HMAC-SHA256 of token under a key kept in Redis (the
// KeyPrefix's "rotation-key", made with SET NX by the first Rotate with a
// grace, and again if it is deleted or evicted; a successor is only made
// with the key Redis holds, so every instance can derive it again), which
// only token's holder can recompute. A successor revoked meanwhile, or
// made under a rotation key since replaced, makes that retry
// [tokenstore.ErrNotFound].
//
// Errors: those of Validate, plus ErrReused, [tokenstore.ErrInvalidGrace],
// [tokenstore.ErrCorrupt] for a grace when the rotation key in Redis is
// not 32 hex-encoded bytes, and, on a Redis that refuses writes,
// ErrOutOfMemory or ErrReadOnly.
func (s *Store) Rotate(ctx context.Context, token string, opts ...tokenstore.RotateOption) (string, tokenstore.Info, error) {
	if err := s.begin(ctx); err != nil {
		return "", tokenstore.Info{}, wrap("rotate", err)
	}
	p, err := tokenstore.NewRotateParams(opts...)
	if err != nil {
		return "", tokenstore.Info{}, wrap("rotate", err)
	}
	old, err := s.format.Parse(token)
	if err != nil {
		return "", tokenstore.Info{}, err
	}
	if fam, known := s.reusedHere.Load(old); known {
		return "", tokenstore.Info{}, wrap("rotate", s.reuse(ctx, old, fam.(string)))
	}
	id, err := uuid.NewV7()
	if err != nil {
		return "", tokenstore.Info{}, wrap("rotate: new id", err)
	}
	newFamily := 0
	if p.NewFamily {
		newFamily = 1
	}
	var (
		newToken string
		h        tokenstore.Hash
		res      []any
		status   int64
	)
	// Twice at most: a first answer that the rotation key changed (-5)
	// drops the one this instance read, and the retry reads it again.
	for range 2 {
		var sum string
		if p.Grace > 0 {
			var k []byte
			if newToken, h, k, err = s.successor(ctx, token); err != nil {
				return "", tokenstore.Info{}, wrap("rotate", err)
			}
			sum = keySum(k)
		} else {
			newToken, h = s.format.GenerateAt(s.clock())
		}
		res, err = s.run(ctx, rotateScript, []string{s.recordKey(old), s.recordKey(h), s.rotationKeyName()},
			s.nowArg(), s.prefix, s.keep, id.String(), p.Grace.Milliseconds(), newFamily, sum).Slice()
		if err != nil {
			// Refused (a replica): a reused token is still ErrReused.
			var rf *reuseFound
			if _, _, rerr := s.readToken(ctx, old); errors.As(rerr, &rf) {
				return "", tokenstore.Info{}, wrap("rotate", s.reuse(ctx, old, rf.family))
			}
			return "", tokenstore.Info{}, wrap("rotate", err)
		}
		if status, _, err = head(res); err != nil {
			return "", tokenstore.Info{}, wrap("rotate", err)
		}
		if status != -5 {
			break
		}
		s.rotationKey.Store(nil)
	}
	switch {
	case status == -5:
		return "", tokenstore.Info{}, wrap("rotate", fmt.Errorf("%w: the rotation key %s changed twice during this Rotate (something else deletes or writes it); nothing was written", tokenstore.ErrCorrupt, s.rotationKeyName()))
	case status == -4:
		return "", tokenstore.Info{}, wrap("rotate", s.reused(res))
	case status == 0:
		return "", tokenstore.Info{}, wrap("rotate", tokenstore.ErrNotFound)
	case status == -1:
		return "", tokenstore.Info{}, wrap("rotate", tokenstore.ErrExpired)
	case len(res) < 3:
		return "", tokenstore.Info{}, wrap("rotate", errReply)
	case status == -3:
		return "", tokenstore.Info{}, wrap("rotate", damaged(res[2]))
	case status == 3:
		// Within the grace: the successor made then, from this token,
		// with the rotation key Redis held then. Re-derive it from this
		// token, the time the stored successor's hash carries and the
		// key: that finds the same token, unless the key changed since.
		// This instance may have read another key before (deleted and
		// made again since): a mismatch reads it again once.
		var stored tokenstore.Hash
		if next, _ := res[3].(string); hex.DecodedLen(len(next)) != len(stored) {
			return "", tokenstore.Info{}, wrap("rotate", errReply)
		} else if _, err := hex.Decode(stored[:], []byte(next)); err != nil {
			return "", tokenstore.Info{}, wrap("rotate", errReply)
		}
		for i := 0; ; i++ {
			k, err := s.secret(ctx)
			if err != nil {
				return "", tokenstore.Info{}, wrap("rotate", err)
			}
			if next, ok := s.format.Rederive(k, token, stored); ok {
				newToken = next
				break
			}
			if i > 0 {
				return "", tokenstore.Info{}, wrap("rotate", fmt.Errorf("%w: the successor made within the grace cannot be derived again: the rotation key %s changed since (deleted, or evicted)", tokenstore.ErrNotFound, s.rotationKeyName()))
			}
			s.rotationKey.Store(nil)
		}
		rec, err := decodeRecord(res[2])
		if err != nil {
			return "", tokenstore.Info{}, wrap("rotate", err)
		}
		return newToken, rec.info(rec.lastUsed), nil
	case status != 1:
		return "", tokenstore.Info{}, wrap("rotate", errReply)
	}
	rec, err := decodeRecord(res[2])
	if err != nil {
		return "", tokenstore.Info{}, wrap("rotate", err)
	}
	s.ctr.issued.Add(1)
	s.ctr.revoked.Add(1)
	return newToken, rec.info(rec.lastUsed), nil
}

// RevokeFamily deletes every live token of the family familyID (its
// latest token, and one in its grace) in one script, and returns how many
// tokens it deleted; an unknown family has none (0, nil). The family's
// tombstones stay: a rotated-away token of it presented later is still
// [tokenstore.ErrReused]. A token never rotated is a family of one, whose
// ID is its own.
func (s *Store) RevokeFamily(ctx context.Context, familyID uuid.UUID) (int, error) {
	op := "revoke family " + familyID.String()
	if err := s.begin(ctx); err != nil {
		return 0, wrap(op, err)
	}
	fam := familyID.String()
	n, err := s.run(ctx, revokeFamilyScript, []string{s.prefix + "f:" + fam, s.idKey(familyID)}, s.prefix, fam).Int64()
	if err != nil {
		return 0, wrap(op, err)
	}
	s.ctr.revoked.Add(uint64(n))
	return int(n), nil
}

// reuseFound is readToken's answer for a rotated-away token presented
// after its grace: the caller runs reuseScript, which revokes the family.
type reuseFound struct{ family string }

func (*reuseFound) Error() string { return "reused token: the family must be revoked" }

// reuse revokes the family of h, a rotated-away token that readToken found
// reused (family: its family, as the read said), and returns ErrReused (or
// what the token is by then).
//
// When Redis does not take the revocation (a replica, a primary refusing
// writes, a call cut short), the token is still refused as reused: the
// read found it so. The family's live tokens stay valid until a store
// that can write meets a reuse of the family; the failure is logged, and
// this Store keeps h in memory as reused (as the file store's read-only
// mode does), so that a clock set back into the grace does not make h
// valid here, and each later presentation tries the revocation again:
// at most maxRememberedReuses of them (see remember).
func (s *Store) reuse(ctx context.Context, h tokenstore.Hash, family string) error {
	_, known := s.reusedHere.Load(h)
	flag := "0"
	if known {
		flag = "1"
	}
	res, err := s.run(ctx, reuseScript, []string{s.recordKey(h)}, s.nowArg(), s.prefix, flag).Slice()
	if errors.Is(err, tokenstore.ErrCorrupt) {
		// Its tombstone damaged since: an answer about the token, not a
		// revocation Redis refused.
		return err
	}
	if err != nil {
		s.remember(h, family)
		s.ctr.reused.Add(1)
		s.reuseLog.Warn(s.log, s.clock(), family, false, "redisstore: token reused after rotation; family not revoked: Redis did not take the revocation (a replica, or a primary refusing writes)", "err", err)
		return fmt.Errorf("%w, but Redis did not take the revocation, so family %s is not revoked: %v", tokenstore.ErrReused, family, err)
	}
	status, _, err := head(res)
	switch {
	case err != nil:
		return err
	case status == -4:
		s.forget(h) // the tombstone's grace is ended for good in Redis
		return s.reused(res)
	case status == -1:
		return tokenstore.ErrExpired
	}
	// Its tombstone reached its deadline since the read: unknown now.
	s.forget(h)
	return tokenstore.ErrNotFound
}

// reused counts and logs the revocation a script reported as
// {-4, revoked, family}, and returns ErrReused naming the family. The
// log is rate-limited per family (see backend.ReuseLog).
func (s *Store) reused(res []any) error {
	if len(res) != 3 {
		return errReply
	}
	n, err1 := toInt(res[1])
	fam, ok := res[2].(string)
	if err1 != nil || !ok {
		return errReply
	}
	s.ctr.reused.Add(1)
	s.ctr.revoked.Add(uint64(n))
	// A line that revoked tokens is never held back: only replays are.
	s.reuseLog.Warn(s.log, s.clock(), fam, n > 0, "redisstore: token reused after rotation; family revoked", "revoked", n)
	return fmt.Errorf("%w (family %s, %d tokens revoked now)", tokenstore.ErrReused, fam, n)
}

// firstUse ends the grace of the predecessor of h, a successor found
// unused since a rotation with a grace, where the use itself was not
// written (a Lookup, or a use write Redis did not take). It only deletes
// a field, so a full Redis takes it where it refuses use writes. Bounded
// as a use write is (useWriteTimeout). Its error means the grace is still
// open: the caller must not answer the successor valid, or the old token
// would keep working after the successor's use (and, with the clock set
// back, again after the grace's end).
func (s *Store) firstUse(ctx context.Context, h tokenstore.Hash) error {
	wctx, cancel := context.WithTimeout(ctx, useWriteTimeout)
	defer cancel()
	err := s.run(wctx, firstUseScript, []string{s.recordKey(h)}).Err()
	if err == nil {
		return nil
	}
	if ctx.Err() == nil && wctx.Err() != nil {
		err = fmt.Errorf("no answer within %v: %w", useWriteTimeout, err)
	}
	// The refusal first: its sentinel's text starts the message, whose
	// package prefix wrap trims, so that the package is named once.
	return fmt.Errorf("%w; so the first use of this token, made by Rotate with a grace, could not be recorded, nor the grace of the token it replaced ended: it is not answered valid until it can be", refusal(err))
}

// retiredInGrace decodes a script's {2, now, tombstone fields}: the
// rotated-away token, which answers as itself, expiring at the grace's end
// at the latest. (tomb's successor fields serve rotateScript only; Validate
// and Lookup do not fetch them.)
func retiredInGrace(res []any) (record, error) {
	if len(res) != 3 {
		return record{}, errReply
	}
	rec, err := decodeRecord(res[2])
	if err != nil {
		return record{}, err
	}
	f, _ := res[2].([]any)
	for i := 0; i+1 < len(f); i += 2 {
		if k, _ := f[i].(string); k == "ge" {
			v, _ := f[i+1].(string)
			ge, err := strconv.ParseInt(v, 10, 64)
			if err != nil || ge == 0 { // 0: no grace (a time before 1970 is negative, not none)
				return record{}, errReply
			}
			rec.retiredGrace = ge
			rec.graceUntil = 0 // its own predecessor's grace, ended by this rotation
			return rec, nil
		}
	}
	return record{}, errReply
}

// rotationKeyLen is the length of the rotation key, in bytes.
const rotationKeyLen = 32

// rotationKeyName is the Redis key of the rotation key.
func (s *Store) rotationKeyName() string { return s.prefix + "rotation-key" }

// keySum is how rotateScript checks the rotation key a successor was
// derived with against Redis's, without the key in its arguments (which
// SLOWLOG and MONITOR show): the SHA-1 of its hex form, as Lua's
// redis.sha1hex computes it.
func keySum(k []byte) string {
	sum := sha1.Sum([]byte(hex.EncodeToString(k)))
	return hex.EncodeToString(sum[:])
}

// secret returns the store's rotation key: read from Redis, where the
// first Store to need it creates it (SET NX), so that every instance
// derives the same successors. It is kept once read; Rotate drops it when
// Redis holds another (deleted, evicted, made again by another instance).
func (s *Store) secret(ctx context.Context) ([]byte, error) {
	if k := s.rotationKey.Load(); k != nil {
		return *k, nil
	}
	fresh := make([]byte, rotationKeyLen)
	_, _ = rand.Read(fresh) // crypto/rand.Read never fails since Go 1.24
	v, err := s.run(ctx, rotationKeyScript, []string{s.rotationKeyName()}, hex.EncodeToString(fresh)).Text()
	if redis.HasErrorPrefix(err, "WRONGTYPE") {
		return nil, fmt.Errorf("%w: the rotation key %s is not a string (delete it: the next Rotate with a grace makes a new one, and retries of the rotations in their grace get ErrNotFound)", tokenstore.ErrCorrupt, s.rotationKeyName())
	}
	if err != nil {
		return nil, err
	}
	k, err := hex.DecodeString(v)
	if err != nil || len(k) != rotationKeyLen {
		return nil, fmt.Errorf("%w: the rotation key %s is not %d hex-encoded bytes (delete it: the next Rotate with a grace makes a new one, and retries of the rotations in their grace get ErrNotFound)", tokenstore.ErrCorrupt, s.rotationKeyName(), rotationKeyLen)
	}
	s.rotationKey.Store(&k)
	return k, nil
}

// successor returns the successor that a Rotate with a grace gives token,
// its hash and the rotation key it was derived with: a token of the
// store's format whose random part is drawn from HMAC-SHA256(rotation
// key, token), so that a retry within the grace finds the same one, and
// only token's holder can compute it.
func (s *Store) successor(ctx context.Context, token string) (string, tokenstore.Hash, []byte, error) {
	k, err := s.secret(ctx)
	if err != nil {
		return "", tokenstore.Hash{}, nil, err
	}
	next, h := s.format.Derive(k, token, s.clock())
	return next, h, k, nil
}

// maxRememberedReuses bounds the reuses a Store keeps in memory (see
// [Store.remember]): about 200 bytes each, 3.2 MB at most (measured: the
// heap after GC holding 16,384 entries of a hash and a family ID). A var
// for the tests.
var maxRememberedReuses = 1 << 14

// remember keeps h, a reuse of family whose revocation Redis did not take,
// in memory. Every rotated-away token replayed where Redis refuses writes
// would otherwise cost an entry for the process's life, and anyone who can
// rotate tokens can make as many as they like: past maxRememberedReuses,
// an arbitrary entry (the first that sync.Map.Range yields, in an order
// seeded per process) makes room. A forgotten reuse is still refused as
// reused by its read while its grace is over; only a clock set back into
// that grace (Options.Now, or Redis's TIME stepped back) would answer it
// valid again on this Store.
func (s *Store) remember(h tokenstore.Hash, family string) {
	if _, loaded := s.reusedHere.LoadOrStore(h, family); loaded {
		return
	}
	if s.reusedCount.Add(1) <= int64(maxRememberedReuses) {
		return
	}
	// One out for h: each entry past the bound evicts one other, so
	// concurrent calls evict as many as they add.
	s.reusedHere.Range(func(k, _ any) bool {
		return k.(tokenstore.Hash) == h || !s.forget(k.(tokenstore.Hash))
	})
}

// forget drops h from the reuses kept in memory, reporting whether it was
// there.
func (s *Store) forget(h tokenstore.Hash) bool {
	if _, loaded := s.reusedHere.LoadAndDelete(h); loaded {
		s.reusedCount.Add(-1)
		return true
	}
	return false
}
