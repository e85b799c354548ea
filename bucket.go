package tokenstore

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"slices"
	"time"

	"github.com/google/uuid"
	bolt "go.etcd.io/bbolt"
)

// The file holds five buckets. Tokens are never stored: records are keyed
// by the SHA-256 of the token, and every index leads back to that hash.
//
//	meta     "app" → "github.com/tokenstore/tokenstore", "schema" → uint32, "count" → uint64 tokens
//	tokens   hash(32) → record
//	ids      id(16) → hash(32)
//	subjects subject ‖ 0x00 ‖ id(16) → hash(32)   (UUIDv7 ids: a prefix scan is oldest first)
//	expiry   deadline(8, ms, order-preserving) ‖ id(16) → hash(32)
//
// The expiry index is ordered by the persisted deadline, so a sweep is a
// range scan from the start to now: its cost follows the expired tokens,
// not the file.
var (
	bucketMeta     = []byte("meta")
	bucketTokens   = []byte("tokens")
	bucketIDs      = []byte("ids")
	bucketSubjects = []byte("subjects")
	bucketExpiry   = []byte("expiry")

	allBuckets = [][]byte{bucketMeta, bucketTokens, bucketIDs, bucketSubjects, bucketExpiry}

	metaApp    = []byte("app")
	metaSchema = []byte("schema")
	metaCount  = []byte("count")

	appName = []byte("github.com/tokenstore/tokenstore")
)

// appendFill is how full bbolt packs the pages it splits in the buckets
// whose keys mostly arrive in order: ids (UUIDv7, time-ordered) and expiry
// (deadline first: new tokens and slid ones land at now + TTL, one
// insertion point per TTL). At bbolt's default of 0.5 an append leaves
// every page it splits half empty: in the 1M-token file both buckets'
// leaves were 49% full (32,258 and 35,713 pages). The tokens and subjects
// buckets take keys in random order and keep the default.
var appendFill = 1.0

// tune sets what bbolt does not keep in the file. committer.update, the
// one way the store writes after Open, calls it at the start of every
// write transaction.
func tune(tx *bolt.Tx) {
	for _, name := range [][]byte{bucketIDs, bucketExpiry} {
		if b := tx.Bucket(name); b != nil {
			b.FillPercent = appendFill
		}
	}
}

// schemaVersion is written to new files; a file with a higher one is
// refused, so an old binary never misreads a newer layout.
const schemaVersion = 1

// recordVersion is the first byte of every record.
const recordVersion = 1

// record is the decoded form of a tokens bucket value. Times are Unix
// milliseconds: absolute, so reopening never extends a lifetime.
type record struct {
	id       uuid.UUID
	subject  string
	created  int64
	lastUsed int64 // as persisted
	policy   Policy
	meta     map[string]string
}

func (r *record) deadline() int64 { return r.policy.Deadline(r.created, r.lastUsed) }

// info renders the record with lastUsed as the latest known use.
func (r *record) info(lastUsed int64) Info {
	return Info{
		ID:         r.id,
		Subject:    r.subject,
		CreatedAt:  time.UnixMilli(r.created),
		LastUsedAt: time.UnixMilli(lastUsed),
		ExpiresAt:  time.UnixMilli(r.policy.Deadline(r.created, lastUsed)),
		Policy:     r.policy,
		Metadata:   r.meta,
	}
}

// Record layout, version 1 (integers big-endian):
//
//	0      version
//	1      policy kind
//	2:10   created ms
//	10:18  last used ms
//	18:26  ttl or idle ms
//	26:34  max lifetime ms
//	34:50  id
//	50     subject length (1 byte: subjects are at most 255 bytes)
//	...    subject, uvarint pair count, pairs of uvarint-length-prefixed key and value
//	-4     CRC32 (IEEE) of everything before it: a flipped bit is ErrCorrupt, never a wrong answer
const recordFixed = 51

func (r *record) encode(dst []byte) []byte {
	dst = append(dst, recordVersion, byte(r.policy.kind))
	dst = binary.BigEndian.AppendUint64(dst, uint64(r.created))
	dst = binary.BigEndian.AppendUint64(dst, uint64(r.lastUsed))
	dst = binary.BigEndian.AppendUint64(dst, uint64(r.policy.ttl.Milliseconds()))
	dst = binary.BigEndian.AppendUint64(dst, uint64(r.policy.max.Milliseconds()))
	dst = append(dst, r.id[:]...)
	dst = append(dst, byte(len(r.subject)))
	dst = append(dst, r.subject...)
	dst = appendMetadata(dst, r.meta)
	return binary.BigEndian.AppendUint32(dst, crc32.ChecksumIEEE(dst))
}

// appendMetadata writes m with its keys sorted, so equal maps encode equally.
func appendMetadata(dst []byte, m map[string]string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(m)))
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		dst = binary.AppendUvarint(dst, uint64(len(k)))
		dst = append(dst, k...)
		dst = binary.AppendUvarint(dst, uint64(len(m[k])))
		dst = append(dst, m[k]...)
	}
	return dst
}

func uvarintLen(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}

// metadataSize is the encoded size of m, without encoding it.
func metadataSize(m map[string]string) int {
	n := uvarintLen(uint64(len(m)))
	for k, v := range m {
		n += uvarintLen(uint64(len(k))) + len(k) + uvarintLen(uint64(len(v))) + len(v)
	}
	return n
}

func corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: record: "+format, append([]any{ErrCorrupt}, args...)...)
}

// decodeRecord parses a tokens bucket value. b may be bbolt memory: the
// result copies what it keeps.
func decodeRecord(b []byte) (record, error) {
	var r record
	if len(b) < recordFixed+1+4 {
		return r, corrupt("%d bytes is too short", len(b))
	}
	body, sum := b[:len(b)-4], binary.BigEndian.Uint32(b[len(b)-4:])
	if crc32.ChecksumIEEE(body) != sum {
		return r, corrupt("checksum mismatch")
	}
	if body[0] != recordVersion {
		return r, corrupt("version %d, this build reads %d", body[0], recordVersion)
	}
	kind := policyKind(body[1])
	if kind != kindAbsolute && kind != kindSliding {
		return r, corrupt("unknown policy kind %d", kind)
	}
	r.created = int64(binary.BigEndian.Uint64(body[2:]))
	r.lastUsed = int64(binary.BigEndian.Uint64(body[10:]))
	r.policy = Policy{
		kind: kind,
		ttl:  time.Duration(binary.BigEndian.Uint64(body[18:])) * time.Millisecond,
		max:  time.Duration(binary.BigEndian.Uint64(body[26:])) * time.Millisecond,
	}
	copy(r.id[:], body[34:50])
	n := int(body[50])
	rest := body[recordFixed:]
	if len(rest) < n {
		return r, corrupt("subject runs past the end")
	}
	r.subject, rest = string(rest[:n]), rest[n:]
	count, k := binary.Uvarint(rest)
	if k <= 0 || count > MaxMetadataSize {
		return r, corrupt("bad metadata count")
	}
	rest = rest[k:]
	if count > 0 {
		r.meta = make(map[string]string, count)
	}
	for range count {
		var key, val string
		var ok bool
		if key, rest, ok = readString(rest); !ok {
			return r, corrupt("metadata runs past the end")
		}
		if val, rest, ok = readString(rest); !ok {
			return r, corrupt("metadata runs past the end")
		}
		r.meta[key] = val
	}
	if len(rest) != 0 {
		return r, corrupt("%d trailing bytes", len(rest))
	}
	return r, nil
}

func readString(b []byte) (string, []byte, bool) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)-k) {
		return "", nil, false
	}
	return string(b[k : k+int(n)]), b[k+int(n):], true
}

// expiryKey orders by deadline (flipping the sign bit keeps negative
// instants, from a badly set clock, before positive ones), then by id.
func expiryKey(deadline int64, id uuid.UUID) []byte {
	k := make([]byte, 8+16)
	binary.BigEndian.PutUint64(k, uint64(deadline)^(1<<63))
	copy(k[8:], id[:])
	return k
}

func expiryKeyDeadline(k []byte) int64 {
	return int64(binary.BigEndian.Uint64(k) ^ (1 << 63))
}

func subjectPrefix(subject string) []byte {
	k := make([]byte, 0, len(subject)+1+16)
	k = append(k, subject...)
	return append(k, 0)
}

func subjectKey(subject string, id uuid.UUID) []byte {
	return append(subjectPrefix(subject), id[:]...)
}

func beUint32(b []byte) uint32 { return binary.BigEndian.Uint32(b) }

func beUint64(b []byte) uint64 {
	if len(b) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

func beAppend32(b []byte, v uint32) []byte { return binary.BigEndian.AppendUint32(b, v) }
func beAppend64(b []byte, v uint64) []byte { return binary.BigEndian.AppendUint64(b, v) }

func hasPrefix(b, prefix []byte) bool {
	return len(b) >= len(prefix) && string(b[:len(prefix)]) == string(prefix)
}

func compareBytes(a, b []byte) int {
	switch {
	case string(a) < string(b):
		return -1
	case string(a) > string(b):
		return 1
	}
	return 0
}
