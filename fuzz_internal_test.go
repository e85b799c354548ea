package tokenstore

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"testing"
)

// FuzzDecodeRecord feeds the record decoder arbitrary bytes: as they are
// (so the checksum refuses almost all), and with their last four bytes
// replaced by the right checksum (so the parser behind it is reached).
// decodeRecord must never panic, must refuse with ErrCorrupt, and what it
// accepts must re-encode to a record that decodes to the same bytes again.
// Seeds: testdata/fuzz/FuzzDecodeRecord.
//
//	go test -run='^$' -fuzz='^FuzzDecodeRecord$' -fuzztime=10s .
func FuzzDecodeRecord(f *testing.F) {
	for _, r := range testRecords() {
		b := r.encode(nil)
		f.Add(b)
		f.Add(b[:len(b)-5])
		f.Add(append(b[:len(b):len(b)], 0))
	}
	f.Add([]byte{})
	f.Add(make([]byte, recordFixed+5))
	f.Fuzz(func(t *testing.T, b []byte) {
		fuzzDecode(t, b)
		if len(b) >= 4 {
			fixed := append([]byte(nil), b...)
			binary.BigEndian.PutUint32(fixed[len(fixed)-4:], crc32.ChecksumIEEE(fixed[:len(fixed)-4]))
			fuzzDecode(t, fixed)
		}
	})
}

func fuzzDecode(t *testing.T, b []byte) {
	rec, err := decodeRecord(b)
	if err != nil {
		if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("decodeRecord: %v, not ErrCorrupt", err)
		}
		return
	}
	if len(rec.subject) > MaxSubjectLen || !rec.policy.IsSliding() && rec.policy.kind != kindAbsolute {
		t.Fatalf("accepted %q: subject of %d bytes, policy %v", b, len(rec.subject), rec.policy)
	}
	// Re-encoding is canonical (metadata sorted, durations in whole
	// milliseconds): one round reaches a fixed point.
	enc := rec.encode(nil)
	rec2, err := decodeRecord(enc)
	if err != nil {
		t.Fatalf("a decoded record re-encodes to bytes it refuses: %v", err)
	}
	if enc2 := rec2.encode(nil); string(enc2) != string(enc) {
		t.Fatalf("re-encoding is not stable:\n%x\n%x", enc, enc2)
	}
	if rec2.id != rec.id || rec2.subject != rec.subject || rec2.created != rec.created || rec2.lastUsed != rec.lastUsed || len(rec2.meta) != len(rec.meta) {
		t.Fatalf("round trip changed the record: %+v → %+v", rec, rec2)
	}
}
