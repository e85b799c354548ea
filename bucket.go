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

// The file holds five buckets (schema 2), and the three of token families
// (family.go, tombstone.go) that a writable Open adds when missing. Tokens
// are never stored: records are keyed by the token's Hash, and every index
// leads back to that hash through the token's id. A Hash starts with the
// token's issue time (6 bytes of ms, then 26 of its SHA-256: token.go), so
// records of tokens issued together are neighbours, in few leaves, and a
// new record lands at the tree's right edge; a token issued before tokens
// carried a time is keyed by its SHA-256, anywhere in the tree (files
// keep such records as they are: no schema change).
//
//	meta     "app" → "github.com/tokenstore/tokenstore", "schema" → uint32, "count" → uint64 tokens,
//	         "usedmax" → uint64 ms ≥ every stored last use, "sweeping" while a sweep is half done,
//	         "rotationkey" → 32 random bytes (the HMAC key of successors: rotate.go)
//	tokens   hash(32: issue ms(6) ‖ SHA-256[:26]) → record (written once, at issue: a use never rewrites it)
//	ids      id(16) → hash prefix(16) ‖ last use(8, ms) ‖ filed deadline(8, ms) ‖ CRC32(4) of id and all that
//	subjects subject ‖ 0x00 ‖ id(16) → ""   (UUIDv7 ids: a prefix scan is oldest first)
//	expiry   filed deadline(8, ms, order-preserving) ‖ id(16) → ""
//	tombstones  hash(32) of a rotated-away token → tombstone (101 bytes: tombstone.go)
//	tombdue     deadline(8, ms, order-preserving) ‖ hash(32) → ""
//	families    family(16) ‖ id(16) → "" for each token created by Rotate in another
//	            token's family; family(16) ‖ hash(32) → "" for each tombstone
//
// A use written to the file rewrites only its ids entry: 68 bytes among
// ids packed in creation order, so 100,000 uses of 1M tokens, written in
// id order, rewrite a leaf for every ~6 of them (recordFixed and
// docs/performance.md have the figures). The expiry index is ordered by
// the filed deadline, which is a lower bound of the real one: a sliding
// token's deadline moves with each use, and its entry is not moved then
// but re-filed by the sweeper when the sweep reaches it. So a sweep is
// still a range scan from the start to now (its cost follows the tokens
// due, not the file), and a use costs one small write.
//
// indexEntries is the one place that names a record's entries.
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
	// metaUsedMax is at least every last use stored in an ids entry
	// (uint64 ms); written with them. See DB.readForUse.
	metaUsedMax = []byte("usedmax")

	appName = []byte("github.com/tokenstore/tokenstore")
)

// appendFill is how full bbolt packs the pages it splits in the buckets
// whose keys mostly arrive in order: ids (UUIDv7, time-ordered) and expiry
// (deadline first: new tokens and slid ones land at now + TTL, one
// insertion point per TTL). At bbolt's default of 0.5 an append leaves
// every page it splits half empty: in the 1M-token file both buckets'
// leaves were 49% full (32,258 and 35,713 pages). The subjects bucket
// takes keys in random order and keeps the default. The tokens bucket
// takes both (putToken).
//
// Just under 1, not 1: bbolt splits a node whose size is not below the
// page size, and at 1.0 it packs a split page to exactly the page size
// when the entries fit it exactly, as the ids entries do (60 × 68 bytes
// plus the 16-byte header is 4096) and the expiry ones (102 × 40 + 16).
// Such a leaf was split again, 57 + 3, by the next write to it: the first
// flush of 100,000 uses among 1M tokens split 16,912 of the 17,786 leaves
// it rewrote and wrote 34,871 pages, 1,428 bytes per use. At this fill a
// split page holds at most pageSize-1 bytes (59 ids entries) and a rewrite
// of the same entries never splits it. The page size is the OS's, hence a
// function.
func appendFill(pageSize int) float64 { return 1 - 1/float64(pageSize) }

// putToken puts a record into the tokens bucket b, and decides b's fill
// for the transaction: appendFill (tune) while every key put is an
// append (below), bbolt's default from the first that is not. A Hash
// starts with the issue time, so tokens issued one by one on a running
// clock are appended (each transaction's tokens of later milliseconds
// than the last's), but tokens of one millisecond in several transactions
// arrive in random order, as do tokens of the earlier format, an upgrade's,
// and all of a benchmark whose clock is frozen. Measured on 200,000 tokens
// issued 64 per transaction (docs/performance.md): in time order the
// default left the leaves 48% full (504 file bytes per token), appendFill
// 99% (336); in random order the default 69% (420), appendFill 27% (672),
// each insertion into a packed page splitting it. Per transaction, each
// order gets its better fill.
//
// An append here is a key after which the bucket holds none, or none
// issued less than appendGap after it: in a file that still holds tokens
// of the earlier format, keyed by their SHA-256, the keys after the
// newest new-format record are those, whose first 6 bytes read as a time
// years ahead (a first byte of 2 or more is past 2039), and new tokens
// issued in time order arrive there, one after another, as at the end of
// the tree: packed, not left half full (TestTokensFill_BesideOldFormat:
// 10,000 new tokens beside 10,000 old took 500 leaves at the default,
// about 250 packed). A key with a record less than appendGap after it is
// an insertion among tokens of its time (concurrent writers, a frozen
// clock, a clock stepped back by less than appendGap) and gets the default.
// A clock stepped back further packs the leaves of the tokens it issues
// before the later ones; those issued once it reads those times again
// are insertions, which split the packed leaves they meet: fill only,
// never which record a key finds.
func putToken(b *bolt.Bucket, k, v []byte) error {
	if b.FillPercent != bolt.DefaultFillPercent {
		if next, _ := b.Cursor().Seek(k); next != nil && (string(next) == string(k) || keyMs(next) <= keyMs(k)+appendGap) {
			b.FillPercent = bolt.DefaultFillPercent
		}
	}
	return b.Put(k, v)
}

// putEntry puts the entry k, v of a record (indexEntries) into b, the
// bucket of index i: the record itself through putToken, which decides
// the tokens bucket's fill.
func putEntry(b *bolt.Bucket, i int, k, v []byte) error {
	if i == inTokens {
		return putToken(b, k, v)
	}
	return b.Put(k, v)
}

// appendGap is how much later than a key put into the tokens bucket the
// next key there must read for the put to count as an append (putToken):
// longer than writers of one store issue out of order, far shorter than
// the gaps between old-format keys read as times.
const appendGap = int64(time.Minute / time.Millisecond)

// keyMs reads the first 6 bytes of a tokens key as a new-format token's
// issue time (Hash), as putToken compares keys; a shorter key is read
// whole.
func keyMs(k []byte) int64 {
	var ms int64
	for _, c := range k[:min(len(k), hashTimeLen)] {
		ms = ms<<8 | int64(c)
	}
	return ms
}

// tune sets what bbolt does not keep in the file. committer.update, the
// one way the store writes after Open, calls it at the start of every
// write transaction.
func tune(tx *bolt.Tx) {
	fill := appendFill(tx.DB().Info().PageSize)
	for _, name := range [][]byte{bucketIDs, bucketExpiry} {
		if b := tx.Bucket(name); b != nil {
			b.FillPercent = fill
		}
	}
	if b := tx.Bucket(bucketTokens); b != nil {
		b.FillPercent = fill // until putToken meets a key that is not an append
	}
}

// schemaVersion is written to new files; a file with a higher one is
// refused, so an old binary never misreads a newer layout, and a file with
// a lower one is upgraded by Open (upgrade.go).
const schemaVersion = 2

// recordVersion is the first byte of every record Issue writes.
// recordVersionFamily marks a record that Rotate wrote: the same layout
// with the family's ID and birth before the checksum (family.go), so that
// a never-rotated record costs nothing more and schema-2 records read as
// their own family.
const (
	recordVersion       = 2
	recordVersionFamily = 3
)

// record is the decoded form of a tokens bucket value. Times are Unix
// milliseconds: absolute, so reopening never extends a lifetime.
type record struct {
	id       uuid.UUID
	subject  string
	created  int64
	lastUsed int64 // as persisted, in the ids entry
	filed    int64 // the expiry entry's deadline, in the ids entry: <= deadline()
	policy   Policy
	meta     map[string]string
	// family and born are set on a record Rotate wrote (version 3): the
	// family's ID and its first token's creation, which the cap counts
	// from. Zero on any other record: see familyID and birth (family.go).
	family uuid.UUID
	born   int64
}

func (r *record) deadline() int64 { return r.deadlineAt(r.lastUsed) }

// Bucket indexes for indexEntries.
const (
	inTokens = iota
	inIDs
	inSubjects
	inExpiry
	entryBuckets
)

// entryBucket names the bucket of each of a record's entries.
var entryBucket = [entryBuckets][]byte{bucketTokens, bucketIDs, bucketSubjects, bucketExpiry}

// kv is one bucket entry.
type kv struct{ k, v []byte }

// indexEntries names every entry the record of h has in the file, by
// bucket (inTokens...): the one place that says what a token is made of.
// Put, delete, batch issue, the touch write, the sweep and Check all go
// through it.
func (r *record) indexEntries(h Hash) [entryBuckets]kv {
	return [entryBuckets]kv{
		inTokens:   {h[:], r.encode(make([]byte, 0, recordFixed+len(r.subject)+8))},
		inIDs:      {r.id[:], idValue(r.id[:], h, r.lastUsed, r.filed)},
		inSubjects: {subjectKey(r.subject, r.id), []byte{}},
		inExpiry:   {expiryKey(r.filed, r.id), []byte{}},
	}
}

// idValueLen is the size of an ids bucket value: the first half of the
// token's hash (enough to find its record: the record's id confirms it),
// the last use, the filed deadline and a CRC32 of the id and all that, so
// that a flipped bit in a last use is ErrCorrupt, never a longer life.
const idValueLen = 16 + 8 + 8 + 4

func idValue(id []byte, h Hash, used, filed int64) []byte {
	return appendIDValue(make([]byte, 0, idValueLen), id, h, used, filed)
}

// appendIDValue appends id's ids value to dst and returns the value alone
// (capped, so that appending to it cannot reach past it).
func appendIDValue(dst, id []byte, h Hash, used, filed int64) []byte {
	at := len(dst)
	v := append(dst, h[:16]...)
	v = binary.BigEndian.AppendUint64(v, uint64(used))
	v = binary.BigEndian.AppendUint64(v, uint64(filed))
	v = binary.BigEndian.AppendUint32(v, idValueCRC(id, v[at:]))
	return v[at:len(v):len(v)]
}

func idValueCRC(id, v []byte) uint32 {
	return crc32.Update(crc32.ChecksumIEEE(id), crc32.IEEETable, v)
}

// idEntry is a decoded ids bucket value.
type idEntry struct {
	prefix      [16]byte // of the token's hash
	used, filed int64
}

// of reports whether the entry is that of the token whose hash is h.
func (e *idEntry) of(h Hash) bool { return string(e.prefix[:]) == string(h[:16]) }

// decodeIDValue parses the ids bucket value v of id.
func decodeIDValue(id, v []byte) (idEntry, error) {
	if len(v) != idValueLen {
		return idEntry{}, fmt.Errorf("%w: ids entry of %d bytes, want %d", ErrCorrupt, len(v), idValueLen)
	}
	if idValueCRC(id, v[:idValueLen-4]) != binary.BigEndian.Uint32(v[idValueLen-4:]) {
		return idEntry{}, fmt.Errorf("%w: ids entry %x: checksum mismatch", ErrCorrupt, id)
	}
	return idEntry{prefix: [16]byte(v[:16]), used: int64(binary.BigEndian.Uint64(v[16:])), filed: int64(binary.BigEndian.Uint64(v[24:]))}, nil
}

// recordOf finds the record an ids entry of id points at: the tokens key
// that starts with its prefix (and, should two share those 128 bits, the
// one whose record has id: for tokens of one millisecond, 80 of those bits
// are the SHA-256's, a 2^-80 chance a pair). It returns the key
// and the record's bytes, or nil when there is none. A record whose id
// bytes are damaged is still found: its checksum tells the damage.
func recordOf(tokens *bolt.Bucket, id []byte, e *idEntry) (Hash, []byte) {
	return recordAt(tokens.Cursor(), id, e)
}

// recordAt is recordOf with a cursor of the tokens bucket, for callers
// that find many records in one transaction (the sweep's scan).
func recordAt(c *bolt.Cursor, id []byte, e *idEntry) (Hash, []byte) {
	var first []byte
	var firstV []byte
	for k, v := c.Seek(e.prefix[:]); k != nil && hasPrefix(k, e.prefix[:]); k, v = c.Next() {
		if len(k) != len(Hash{}) {
			continue
		}
		if first == nil {
			first, firstV = k, v
		}
		// The id is bytes 26:42 of a version-2 or 3 record.
		if len(v) >= recordFixed && string(v[26:42]) == string(id) {
			return Hash(k), v
		}
	}
	if first == nil {
		return Hash{}, nil
	}
	return Hash(first), firstV
}

// info renders the record with lastUsed as the latest known use.
func (r *record) info(lastUsed int64) Info {
	return Info{
		ID:         r.id,
		FamilyID:   r.familyID(),
		Subject:    r.subject,
		CreatedAt:  time.UnixMilli(r.created),
		LastUsedAt: time.UnixMilli(lastUsed),
		ExpiresAt:  time.UnixMilli(r.deadlineAt(lastUsed)),
		Policy:     r.policy,
		Metadata:   r.meta,
	}
}

// Record layout, version 2 (integers big-endian). Version 1 (schema 1)
// also held the last use, at 10:18; upgrade.go reads it.
//
//	0      version
//	1      policy kind
//	2:10   created ms
//	10:18  ttl or idle ms
//	18:26  max lifetime ms
//	26:42  id
//	42     subject length (1 byte: subjects are at most 255 bytes)
//	...    subject, uvarint pair count, pairs of uvarint-length-prefixed key and value
//	-28    version 3 only: family id(16), family birth ms(8)
//	-4     CRC32 (IEEE) of everything before it: a flipped bit is ErrCorrupt, never a wrong answer
const recordFixed = 43

func (r *record) encode(dst []byte) []byte {
	version := byte(recordVersion)
	if r.successor() {
		version = recordVersionFamily
	}
	dst = append(dst, version, byte(r.policy.kind))
	dst = binary.BigEndian.AppendUint64(dst, uint64(r.created))
	dst = binary.BigEndian.AppendUint64(dst, uint64(r.policy.ttl.Milliseconds()))
	dst = binary.BigEndian.AppendUint64(dst, uint64(r.policy.max.Milliseconds()))
	dst = append(dst, r.id[:]...)
	dst = append(dst, byte(len(r.subject)))
	dst = append(dst, r.subject...)
	dst = appendMetadata(dst, r.meta)
	if version == recordVersionFamily {
		dst = appendFamily(dst, r)
	}
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

// decodeRecord parses a tokens bucket value; lastUsed and filed are the
// ids entry's (getRecord). b may be bbolt memory: the result copies what
// it keeps.
func decodeRecord(b []byte) (r record, err error) {
	if len(b) < recordFixed+1+4 {
		return r, corrupt("%d bytes is too short", len(b))
	}
	body, sum := b[:len(b)-4], binary.BigEndian.Uint32(b[len(b)-4:])
	if crc32.ChecksumIEEE(body) != sum {
		return r, corrupt("checksum mismatch")
	}
	switch body[0] {
	case recordVersion:
	case recordVersionFamily:
		if body, err = decodeFamily(&r, body); err != nil {
			return r, err
		}
	default:
		return r, corrupt("version %d, this build reads %d and %d", body[0], recordVersion, recordVersionFamily)
	}
	kind := policyKind(body[1])
	if kind != kindAbsolute && kind != kindSliding {
		return r, corrupt("unknown policy kind %d", kind)
	}
	r.created = int64(binary.BigEndian.Uint64(body[2:]))
	r.policy = Policy{
		kind: kind,
		ttl:  time.Duration(binary.BigEndian.Uint64(body[10:])) * time.Millisecond,
		max:  time.Duration(binary.BigEndian.Uint64(body[18:])) * time.Millisecond,
	}
	copy(r.id[:], body[26:42])
	return decodeRecordTail(r, body[recordFixed-1:])
}

// decodeRecordTail reads the subject and metadata, from the subject
// length byte on.
func decodeRecordTail(r record, body []byte) (record, error) {
	n := int(body[0])
	rest := body[1:]
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
		// Sized by what the bytes left can hold (an entry takes at least
		// its two lengths), not by the count alone: a damaged count made
		// every decode of the record allocate a 4,096-entry map.
		r.meta = make(map[string]string, min(count, uint64(len(rest)/2)))
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

// expiryKeyLen is the length of an expiry key: deadline, id.
const expiryKeyLen = 8 + 16

// expiryKey orders by deadline (flipping the sign bit keeps negative
// instants, from a badly set clock, before positive ones), then by id.
func expiryKey(deadline int64, id uuid.UUID) []byte {
	k := make([]byte, expiryKeyLen)
	binary.BigEndian.PutUint64(k, uint64(deadline)^(1<<63))
	copy(k[8:], id[:])
	return k
}

// expiryKeyDeadline is the deadline an expiry or tombdue key starts with.
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

// raiseUsedMax makes meta's usedmax at least used, in the transaction that
// stores a use.
func raiseUsedMax(tx *bolt.Tx, used int64) error {
	m := tx.Bucket(bucketMeta)
	if v := m.Get(metaUsedMax); len(v) == 8 && int64(binary.BigEndian.Uint64(v)) >= used {
		return nil
	}
	return m.Put(metaUsedMax, beAppend64(nil, uint64(used)))
}
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
