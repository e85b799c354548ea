package tokenstore

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
)

func testRecords() []record {
	id := uuid.MustParse("0190a0b0-c0d0-7e0f-8a1b-2c3d4e5f6071")
	now := time.Date(2030, 1, 2, 3, 4, 5, 6e6, time.UTC).UnixMilli()
	return []record{
		{id: id, subject: "u", created: now, lastUsed: now, policy: Absolute(time.Hour)},
		{id: id, subject: "user-42", created: now, lastUsed: now + 1234, policy: Sliding(time.Hour, 0),
			meta: map[string]string{"scope": "read write", "device": "phone 📱", "": "", "bin": "\x00\xff"}},
		{id: id, subject: strings.Repeat("é", 127) + "a", created: now, lastUsed: now, policy: Sliding(14*day, 30*day),
			meta: map[string]string{"k": strings.Repeat("v", 4000)}},
		{id: uuid.Nil, subject: "before 1970", created: -86_400_000, lastUsed: -1, policy: Sliding(time.Millisecond, time.Second)},
	}
}

func TestRecord_EncodeDecode(t *testing.T) {
	for _, want := range testRecords() {
		b := want.encode(nil)
		want.lastUsed, want.filed = 0, 0 // in the ids entry, not the record
		assert.Equal(t, byte(recordVersion), b[0], "version byte first")
		got, err := decodeRecord(b)
		require.NoError(t, err)
		assert.Equal(t, want, got)
		assert.Equal(t, b, got.encode(nil), "encoding is canonical: metadata keys sorted")

		// The result owns its memory: bbolt reuses the bytes it hands out.
		clear(b)
		assert.Equal(t, want, got)
	}
}

func TestIDValue_EncodeDecode(t *testing.T) {
	h := Hash{1, 2, 3, 15: 4, 31: 5}
	id := []byte("0123456789abcdef")
	for _, c := range []struct{ used, filed int64 }{{1893553445006, 1893553445006 + 3600_000}, {-1, math.MinInt64}, {0, 0}} {
		v := idValue(id, h, c.used, c.filed)
		require.Len(t, v, idValueLen)
		got, err := decodeIDValue(id, v)
		require.NoError(t, err)
		assert.Equal(t, idEntry{prefix: [16]byte(h[:16]), used: c.used, filed: c.filed}, got)
		assert.True(t, got.of(h))
		assert.False(t, got.of(Hash{1, 2, 3}))
		for n := range len(v) {
			_, err := decodeIDValue(id, v[:n])
			require.ErrorIs(t, err, ErrCorrupt, "cut to %d bytes", n)
		}
		// Every flipped bit, of the value or of the id it is filed
		// under, is ErrCorrupt: a last use never changes silently.
		for i := range 8 * len(v) {
			w := slices.Clone(v)
			w[i/8] ^= 1 << (i % 8)
			_, err := decodeIDValue(id, w)
			require.ErrorIs(t, err, ErrCorrupt, "bit %d", i)
		}
		_, err = decodeIDValue([]byte("0123456789abcdeF"), v)
		require.ErrorIs(t, err, ErrCorrupt, "another id's entry")
	}
}

// TestRecord_Decode_Truncated cuts every record at every length. Cut, the
// CRC no longer matches; cut and given a fresh CRC, the layout checks
// still refuse it. Either way: ErrCorrupt, never a panic, never a record.
func TestRecord_Decode_Truncated(t *testing.T) {
	for _, rec := range testRecords() {
		b := rec.encode(nil)
		body := b[:len(b)-4]
		for n := range len(b) {
			_, err := decodeRecord(b[:n])
			require.ErrorIs(t, err, ErrCorrupt, "cut to %d of %d bytes", n, len(b))
		}
		for n := range len(body) {
			_, err := decodeRecord(withCRC(body[:n]))
			require.ErrorIs(t, err, ErrCorrupt, "body cut to %d of %d bytes, valid CRC", n, len(body))
		}
		_, err := decodeRecord(withCRC(append(slices.Clone(body), 0)))
		require.ErrorIs(t, err, ErrCorrupt, "a trailing byte")
	}
}

// TestRecord_Decode_Flipped flips every bit of a record: the CRC catches
// each one.
func TestRecord_Decode_Flipped(t *testing.T) {
	rec := testRecords()[1]
	b := rec.encode(nil)
	for i := range len(b) * 8 {
		c := slices.Clone(b)
		c[i/8] ^= 1 << (i % 8)
		_, err := decodeRecord(c)
		require.ErrorIs(t, err, ErrCorrupt, "bit %d flipped", i)
	}
}

// TestRecord_Decode_BadFields checks the layout checks behind a valid CRC.
func TestRecord_Decode_BadFields(t *testing.T) {
	base := testRecords()[1].encode(nil)
	body := base[:len(base)-4]
	tests := []struct {
		name string
		edit func(b []byte) []byte
	}{
		{"newer version", func(b []byte) []byte { b[0] = recordVersion + 1; return b }},
		{"version 0", func(b []byte) []byte { b[0] = 0; return b }},
		{"default policy kind", func(b []byte) []byte { b[1] = byte(kindDefault); return b }},
		{"unknown policy kind", func(b []byte) []byte { b[1] = 9; return b }},
		{"subject past the end", func(b []byte) []byte { b[50] = 255; return b }},
		{"huge metadata count", func(b []byte) []byte {
			b = b[:recordFixed+int(b[50])]
			return binary.AppendUvarint(b, math.MaxUint64)
		}},
		{"metadata count above the pairs", func(b []byte) []byte {
			b = b[:recordFixed+int(b[50])]
			return append(binary.AppendUvarint(b, 2), 1, 'k', 1, 'v')
		}},
		{"metadata length past the end", func(b []byte) []byte {
			b = b[:recordFixed+int(b[50])]
			return append(binary.AppendUvarint(b, 1), 1, 'k', 100, 'v')
		}},
		{"bad metadata varint", func(b []byte) []byte {
			b = b[:recordFixed+int(b[50])]
			return append(b, 0xff, 0xff)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decodeRecord(withCRC(tt.edit(slices.Clone(body))))
			require.ErrorIs(t, err, ErrCorrupt)
		})
	}
}

func withCRC(body []byte) []byte {
	return binary.BigEndian.AppendUint32(slices.Clone(body), crc32.ChecksumIEEE(body))
}

// TestExpiryKey_Order checks that the byte order of expiry keys is the
// order of their deadlines, negative ones (a clock set before 1970)
// included, then of their IDs: a sweep's range scan from the first key to
// now must find exactly the due tokens.
func TestExpiryKey_Order(t *testing.T) {
	deadlines := []int64{math.MinInt64, math.MinInt64 + 1, -86_400_000, -256, -1, 0, 1, 255, 256, 1 << 40, math.MaxInt64 - 1, math.MaxInt64}
	ids := []uuid.UUID{uuid.Nil, uuid.MustParse("00000000-0000-7000-8000-000000000001"), uuid.Max}
	var keys [][]byte
	for _, d := range deadlines {
		for _, id := range ids {
			k := expiryKey(d, id)
			require.Len(t, k, 24)
			assert.Equal(t, d, expiryKeyDeadline(k), "the deadline reads back")
			assert.Equal(t, id[:], k[8:], "the ID follows")
			keys = append(keys, k)
		}
	}
	assert.True(t, slices.IsSortedFunc(keys, bytes.Compare), "keys built in deadline, then ID, order are sorted as bytes")

	shuffled := slices.Clone(keys)
	slices.Reverse(shuffled)
	slices.SortFunc(shuffled, bytes.Compare)
	assert.Equal(t, keys, shuffled)

	// A scan up to now = 0 stops at the first positive deadline.
	var due []int64
	for _, k := range keys {
		if expiryKeyDeadline(k) > 0 {
			break
		}
		due = append(due, expiryKeyDeadline(k))
	}
	assert.Equal(t, []int64{math.MinInt64, math.MinInt64 + 1, -86_400_000, -256, -1, 0}, slices.Compact(due))
}

// Rewriting entries of the same size into the ids and expiry buckets, as a
// flush does, must not split their leaves: at FillPercent 1.0 bbolt packed
// a leaf to exactly the page size (60 ids entries of 68 bytes and the
// header), and split it again on its next write.
func TestTune_RewriteDoesNotSplit(t *testing.T) {
	splits := func(fill float64) int64 {
		bdb, err := bolt.Open(filepath.Join(t.TempDir(), "fill.db"), 0o600, nil)
		require.NoError(t, err)
		defer bdb.Close()
		v := make([]byte, idValueLen)
		key := func(i int) []byte { return binary.BigEndian.AppendUint64(make([]byte, 8, 16), uint64(i)) }
		require.NoError(t, bdb.Update(func(tx *bolt.Tx) error {
			b, err := tx.CreateBucket(bucketIDs)
			require.NoError(t, err)
			b.FillPercent = fill
			for i := range 6000 { // appended in key order, as UUIDv7 ids are
				require.NoError(t, b.Put(key(i), v))
			}
			return nil
		}))
		tx, err := bdb.Begin(true)
		require.NoError(t, err)
		b := tx.Bucket(bucketIDs)
		b.FillPercent = fill
		for i := 0; i < 6000; i += 7 { // a use in about every leaf
			require.NoError(t, b.Put(key(i), v))
		}
		require.NoError(t, tx.Commit())
		st := tx.Stats()
		return st.GetSplit()
	}
	require.Positive(t, splits(1.0), "the fill that split full leaves again (the test can fail)")
	assert.Zero(t, splits(appendFill(os.Getpagesize())))
}
