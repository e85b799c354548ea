//go:build linux

package reliability_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"github.com/tokenstore/tokenstore"
	"github.com/tokenstore/tokenstore/tokenstoretest"
)

// Test 6: hostile files.
//
// A real token file (issued, used, revoked, rotated, expired tokens) is
// mutated hostileFiles times — truncated, bit-flipped, pages zeroed or
// filled with garbage or copied over others, meta pages destroyed, a
// record's bit flipped, another application's bbolt file, a newer schema —
// and each copy is opened in-process with every panic recovered and
// counted. Open must return ErrCorrupt or a working store; no revoked,
// expired or never-issued token may validate in it; Check must report
// every flipped record bit.

var hostileFiles = flag.Int("hostile.files", 500, "mutated files of TestHostile_Files (long run: 20000)")

const hostilePage = 4096

// hostileBase is the file the mutations start from, and what is in it.
type hostileBase struct {
	bytes   []byte
	clock   *tokenstoretest.Clock
	live    []string // tokens that validate in the intact file
	refused []string // revoked, rotated away, expired or never issued: must never validate
	records []hostileRecord
	pages   int
}

// hostileRecord is a token record that occurs once in the file: the live
// copy, not a stale one in a freed page.
type hostileRecord struct {
	key         []byte
	off, length int
}

func newHostileBase(t *testing.T, dir string) *hostileBase {
	ctx := context.Background()
	path := filepath.Join(dir, "base.db")
	h := &hostileBase{clock: tokenstoretest.NewClockAt(epoch)}
	// TouchInterval -1: each Validate writes its use at once, so nothing is
	// left for Close to write and the revocation below is the file's last
	// transaction.
	db, err := tokenstore.Open(path, &tokenstore.Options{Now: h.clock.Now, SweepInterval: -1, TouchInterval: -1})
	require.NoError(t, err)
	policies := []tokenstore.Policy{tokenstore.Absolute(24 * time.Hour), tokenstore.Sliding(time.Hour, 48*time.Hour), {}}
	reqs := make([]tokenstore.IssueRequest, 200)
	for i := range reqs {
		reqs[i] = tokenstore.IssueRequest{Subject: fmt.Sprintf("user-%d", i%20), Policy: policies[i%3]}
		if i%4 == 0 {
			reqs[i].Metadata = map[string]string{"device": fmt.Sprintf("laptop %d", i), "scope": "read write"}
		}
	}
	out, err := db.IssueBatch(ctx, reqs)
	require.NoError(t, err)
	type tok struct {
		token, subject string
		info           tokenstore.Info
	}
	var toks []tok
	for _, o := range out {
		toks = append(toks, tok{o.Token, o.Info.Subject, o.Info})
	}
	for i := range 40 {
		s, info, err := db.Issue(ctx, fmt.Sprintf("user-%d", i%20), tokenstore.WithPolicy(policies[i%3]))
		require.NoError(t, err)
		toks = append(toks, tok{s, info.Subject, info})
	}
	for range 10 { // expire one minute from now
		s, _, err := db.Issue(ctx, "short-lived", tokenstore.WithPolicy(tokenstore.Absolute(time.Second)))
		require.NoError(t, err)
		h.refused = append(h.refused, s)
	}
	h.clock.Advance(time.Minute)
	for i := 0; i < len(toks); i += 8 {
		_, err := db.Validate(ctx, toks[i].token)
		require.NoError(t, err)
	}
	gone := map[string]bool{}
	for i := 1; i < 60; i += 2 {
		require.NoError(t, db.Revoke(ctx, toks[i].token))
		gone[toks[i].token] = true
	}
	for i := 61; i < 80; i += 2 {
		require.NoError(t, db.RevokeID(ctx, toks[i].info.ID))
		gone[toks[i].token] = true
	}
	n, err := db.RevokeSubject(ctx, "user-7")
	require.NoError(t, err)
	require.Positive(t, n)
	for _, tk := range toks {
		if tk.subject == "user-7" {
			gone[tk.token] = true
		}
	}
	for i := 100; i < 120; i++ {
		if gone[toks[i].token] {
			continue
		}
		nt, _, err := db.Rotate(ctx, toks[i].token)
		require.NoError(t, err)
		gone[toks[i].token] = true
		toks = append(toks, tok{token: nt})
	}
	// The last transaction is a revocation: the worst case for a file
	// whose newest meta page is destroyed.
	last := toks[len(toks)-1].token
	require.NoError(t, db.Revoke(ctx, last))
	gone[last] = true
	require.NoError(t, db.Close())

	for _, tk := range toks {
		if gone[tk.token] {
			h.refused = append(h.refused, tk.token)
		} else {
			h.live = append(h.live, tk.token)
		}
	}
	f, err := tokenstore.NewFormat("")
	require.NoError(t, err)
	for range 30 {
		s, _ := f.Generate()
		h.refused = append(h.refused, s)
	}
	h.bytes, err = os.ReadFile(path)
	require.NoError(t, err)
	h.pages = len(h.bytes) / hostilePage

	// Find each record's live copy through bbolt itself.
	bdb, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	require.NoError(t, err)
	require.NoError(t, bdb.View(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("tokens")).ForEach(func(k, v []byte) error {
			if i := bytes.Index(h.bytes, v); i >= 0 && bytes.Count(h.bytes, v) == 1 {
				h.records = append(h.records, hostileRecord{key: slices.Clone(k), off: i, length: len(v)})
			}
			return nil
		})
	}))
	require.NoError(t, bdb.Close())
	require.NotEmpty(t, h.records)
	return h
}

// otherApp returns a bbolt file of another application, or one that looks
// like tokenstore's but is not what this build reads.
func (h *hostileBase) otherApp(t *testing.T, dir string, kind int, rng *rand.Rand) []byte {
	path := filepath.Join(dir, "other.db")
	_ = os.Remove(path)
	switch kind {
	case 0, 1: // another application's buckets; or tokenstore's names with other contents
		db, err := bolt.Open(path, 0o600, nil)
		require.NoError(t, err)
		require.NoError(t, db.Update(func(tx *bolt.Tx) error {
			names := []string{"users", "sessions", "settings"}
			if kind == 1 {
				names = []string{"meta", "tokens", "ids", "subjects", "expiry"}
			}
			for _, name := range names {
				b, err := tx.CreateBucketIfNotExists([]byte(name))
				if err != nil {
					return err
				}
				for i := range 50 {
					k, v := make([]byte, 1+rng.IntN(40)), make([]byte, rng.IntN(200))
					fillRandom(rng, k)
					fillRandom(rng, v)
					if err := b.Put(append(k, byte(i)), v); err != nil {
						return err
					}
				}
			}
			return nil
		}))
		require.NoError(t, db.Close())
	default: // the real file, stamped with a newer schema, another app name, or a bucket missing
		require.NoError(t, os.WriteFile(path, h.bytes, 0o600))
		db, err := bolt.Open(path, 0o600, nil)
		require.NoError(t, err)
		require.NoError(t, db.Update(func(tx *bolt.Tx) error {
			m := tx.Bucket([]byte("meta"))
			switch kind {
			case 2:
				return m.Put([]byte("schema"), binary.BigEndian.AppendUint32(nil, 3+uint32(rng.IntN(1000)))) // this build reads schema 2
			case 3:
				return m.Put([]byte("app"), []byte("tokenstorf"))
			case 4:
				return m.Delete([]byte("schema"))
			}
			return tx.DeleteBucket([]byte([]string{"tokens", "ids", "subjects", "expiry"}[rng.IntN(4)]))
		}))
		require.NoError(t, db.Close())
	}
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return b
}

func fillRandom(rng *rand.Rand, b []byte) {
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
}

// hostileKinds names the mutations; mutate picks them in turn.
var hostileKinds = []string{
	"truncate", "bit flips", "zero page", "garbage page", "garbage file", "record bit flip",
	"meta page", "copy page", "append garbage", "other app", "tokenstore look-alike", "newer schema",
	"other app name", "schema missing", "bucket missing", "record bit flip", "bit flips",
}

// mutate returns a damaged copy of the base file and, for a record bit
// flip, the key of the record it damaged.
func (h *hostileBase) mutate(t *testing.T, dir string, kind string, rng *rand.Rand) (b []byte, damaged []byte) {
	b = slices.Clone(h.bytes)
	page := func() []byte { p := rng.IntN(h.pages); return b[p*hostilePage : (p+1)*hostilePage] }
	switch kind {
	case "truncate":
		n := rng.IntN(len(b))
		if rng.IntN(2) == 0 {
			n -= n % hostilePage
		}
		b = b[:n]
	case "bit flips":
		for range 1 + rng.IntN(16) {
			i := rng.IntN(len(b))
			b[i] ^= 1 << rng.IntN(8)
		}
	case "zero page":
		clear(page())
	case "garbage page":
		fillRandom(rng, page())
	case "garbage file":
		b = make([]byte, rng.IntN(4*hostilePage)+rng.IntN(2)*hostilePage*8)
		fillRandom(rng, b)
	case "record bit flip":
		r := h.records[rng.IntN(len(h.records))]
		i := r.off + rng.IntN(r.length)
		b[i] ^= 1 << rng.IntN(8)
		damaged = r.key
	case "meta page": // destroy one of bbolt's two meta pages, or both
		switch rng.IntN(3) {
		case 0:
			clear(b[:hostilePage])
		case 1:
			clear(b[hostilePage : 2*hostilePage])
		default:
			fillRandom(rng, b[:2*hostilePage])
		}
	case "copy page":
		copy(page(), page())
	case "append garbage":
		g := make([]byte, hostilePage*(1+rng.IntN(4)))
		fillRandom(rng, g)
		b = append(b, g...)
	case "other app":
		b = h.otherApp(t, dir, 0, rng)
	case "tokenstore look-alike":
		b = h.otherApp(t, dir, 1, rng)
	case "newer schema":
		b = h.otherApp(t, dir, 2, rng)
	case "other app name":
		b = h.otherApp(t, dir, 3, rng)
	case "schema missing":
		b = h.otherApp(t, dir, 4, rng)
	case "bucket missing":
		b = h.otherApp(t, dir, 5, rng)
	default:
		t.Fatalf("unknown mutation %q", kind)
	}
	return b, damaged
}

// hostileStats are the figures of TestHostile_Files.
type hostileStats struct {
	files, corrupt, working, otherErr int
	modified                          int // files Open refused but changed
	panics                            map[string]int
	refusedValid                      int // must stay 0
	closeErrs                         int // Close reported a write that failed on a damaged page
	issuedLost                        int // tokens issued into a damaged file that then did not validate
	liveValid, liveRefused            int
	recordFlips, recordFlipsReported  int
	byKind                            map[string][3]int
	otherErrs                         []string
}

// try runs fn, turning a panic (and a memory fault in bbolt's mmap) into
// a count under name.
func (s *hostileStats) try(name string, fn func()) (ok bool) {
	defer func() {
		if r := recover(); r != nil {
			s.panics[name]++
			ok = false
		}
	}()
	fn()
	return true
}

func TestHostile_Files(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(testSeed(t), 6))
	base := newHostileBase(t, dir)
	// A fault reading bbolt's mmap (a page past the end of a truncated
	// file) would kill the process; make it a panic, so it is counted.
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))

	// A fatal error (a stack overflow, a fault in a goroutine of bbolt's)
	// ends the process with its own message and stack, and no "--- FAIL"
	// line; it also skips TempDir's removal. The seed does not replay it
	// (the base file's tokens are random), so each damaged file is kept,
	// as made, in lastMutation until the next one: after such a death it
	// is the file that caused it, and lastKind says which mutation and
	// which file of the run it was.
	keep := t.ArtifactDir()
	lastMutation, lastKind := filepath.Join(keep, "last-mutation.db"), filepath.Join(keep, "last-mutation.txt")
	t.Logf("after a fatal error, the damaged file that caused it is %s (%s says which)", lastMutation, lastKind)

	st := &hostileStats{panics: map[string]int{}, byKind: map[string][3]int{}}
	start := time.Now()
	for i := range *hostileFiles {
		kind := hostileKinds[i%len(hostileKinds)]
		b, damaged := base.mutate(t, dir, kind, rng)
		require.NoError(t, os.WriteFile(lastMutation, b, 0o600))
		require.NoError(t, os.WriteFile(lastKind, fmt.Appendf(nil, "file %d of the run: %s\n", i, kind), 0o600))
		// The last file's copy goes (a long run kept gigabytes of them); each
		// has a name of its own, as a store that could not close keeps
		// its file's lock until the process ends.
		if i > 0 {
			require.NoError(t, os.Remove(filepath.Join(dir, fmt.Sprintf("m%d.db", i-1))))
		}
		path := filepath.Join(dir, fmt.Sprintf("m%d.db", i))
		require.NoError(t, os.WriteFile(path, b, 0o600))
		sum := sha256.Sum256(b)
		st.files++
		k := st.byKind[kind]

		var db *tokenstore.DB
		var err error
		if !st.try("Open", func() {
			db, err = tokenstore.Open(path, &tokenstore.Options{Now: base.clock.Now, SweepInterval: -1, LockTimeout: 100 * time.Millisecond})
		}) {
			t.Errorf("file %d (%s): Open panicked", i, kind)
			continue
		}
		if err != nil {
			if errors.Is(err, tokenstore.ErrCorrupt) {
				st.corrupt++
				k[0]++
			} else {
				st.otherErr++
				st.otherErrs = append(st.otherErrs, kind+": "+err.Error())
			}
			if after, rerr := os.ReadFile(path); rerr != nil || sha256.Sum256(after) != sum {
				st.modified++
				t.Errorf("file %d (%s): Open refused it (%v) but changed it", i, kind, err)
			}
			st.byKind[kind] = k
			continue
		}
		st.working++
		k[1]++

		var problems []string
		st.try("Check", func() {
			var cerr error
			problems, cerr = db.Check(ctx)
			if cerr != nil {
				problems = append(problems, cerr.Error())
			}
		})
		if len(problems) > 0 {
			k[2]++
		}
		if damaged != nil {
			st.recordFlips++
			want := fmt.Sprintf("record …%x", damaged[len(damaged)-6:])
			if slices.ContainsFunc(problems, func(p string) bool { return strings.Contains(p, want) }) {
				st.recordFlipsReported++
			} else {
				t.Errorf("file %d: a bit flipped in record %s and Check said %q", i, want, problems)
			}
		}
		valid := 0
		for _, tok := range base.refused {
			st.try("Validate", func() {
				if _, err := db.Validate(ctx, tok); err == nil {
					valid++
				}
			})
		}
		if valid > 0 {
			st.refusedValid += valid
			t.Errorf("file %d (%s): %d revoked, expired or unknown tokens validate", i, kind, valid)
		}
		for range 16 {
			tok := base.live[rng.IntN(len(base.live))]
			st.try("Lookup", func() {
				if _, err := db.Lookup(ctx, tok); err == nil {
					st.liveValid++
				} else {
					st.liveRefused++
				}
			})
		}
		st.try("List", func() { _, _ = db.List(ctx, "user-3") })
		st.try("ForEach", func() { _ = db.ForEach(ctx, func(tokenstore.Info) error { return nil }) })
		st.try("Stats", func() { _ = db.Stats() })
		// Writes last: a panic inside one leaves the store unable to write.
		wrote := st.try("Issue", func() {
			if tok, _, err := db.Issue(ctx, "newcomer"); err == nil {
				// In a damaged tree a new key can land where a search
				// does not find it: the token fails closed. Check must
				// have said the file is damaged.
				if _, err := db.Validate(ctx, tok); err != nil {
					st.issuedLost++
					assert.NotEmpty(t, problems, "file %d (%s): a token issued into a file Check found clean does not validate: %v", i, kind, err)
				}
			}
		})
		if wrote {
			wrote = st.try("Revoke", func() { _ = db.Revoke(ctx, base.live[rng.IntN(len(base.live))]) })
		}
		if wrote {
			st.try("Sweep", func() { _, _ = db.Sweep(ctx) })
		}
		st.try("Close", func() {
			if err := db.Close(); err != nil {
				st.closeErrs++
			}
		})
		st.byKind[kind] = k
	}
	for name, n := range st.panics {
		if name == "Open" {
			continue
		}
		t.Logf("%d panics in %s (recovered by the test, not by tokenstore)", n, name)
	}
	assert.Zero(t, st.panics["Open"], "Open panicked")
	assert.Zero(t, st.refusedValid, "revoked, expired or unknown tokens that validated")
	assert.Zero(t, st.modified, "files Open refused but modified")
	assert.Empty(t, st.otherErrs, "Open errors other than ErrCorrupt")
	assert.Equal(t, st.recordFlips, st.recordFlipsReported, "record bit flips Check reported")
	var kinds []string
	for _, kind := range slices.Sorted(maps.Keys(st.byKind)) {
		k := st.byKind[kind]
		kinds = append(kinds, fmt.Sprintf("%s %d/%d/%d", kind, k[0], k[1], k[2]))
	}
	t.Logf("hostile files: %d mutations of a %d KiB file in %s: ErrCorrupt %d, opened %d, other errors %d; panics %v; "+
		"revoked/expired/unknown tokens validated %d (of %d tries); live tokens still valid %d, refused %d; "+
		"record bit flips reported by Check %d/%d; refused files modified %d; Close errors %d; tokens issued into a damaged file that failed closed %d",
		st.files, len(base.bytes)>>10, time.Since(start).Round(time.Millisecond), st.corrupt, st.working, st.otherErr, st.panics,
		st.refusedValid, st.working*len(base.refused), st.liveValid, st.liveRefused, st.recordFlipsReported, st.recordFlips, st.modified, st.closeErrs, st.issuedLost)
	t.Logf("by kind (ErrCorrupt/opened/opened with Check problems): %s", strings.Join(kinds, "; "))
}
