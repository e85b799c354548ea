package tokenstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestOpenChild opens the file TS_OPEN_CHILD names, read-only then
// read-write, and prints what Open returned (and, with
// TS_OPEN_CHILD_CHECK set, what Check returned): openInChild runs it in a
// subprocess, as a file that makes bbolt fail fatally ends the process.
func TestOpenChild(t *testing.T) {
	path := os.Getenv("TS_OPEN_CHILD")
	if path == "" {
		t.Skip("run by openInChild in a subprocess")
	}
	for _, ro := range []bool{true, false} {
		db, err := Open(path, &Options{SweepInterval: -1, ReadOnly: ro})
		if err == nil {
			fmt.Printf("read-only %v: opened\n", ro)
			if os.Getenv("TS_OPEN_CHILD_CHECK") != "" {
				p, err := db.Check(context.Background())
				fmt.Printf("read-only %v: check: %d problems, %v\n", ro, len(p), err)
			}
			_ = db.Close()
			continue
		}
		fmt.Printf("read-only %v: corrupt %v: %v\n", ro, errors.Is(err, ErrCorrupt), err)
	}
}

// openInChild runs TestOpenChild on the file at path in a subprocess,
// which also runs Check on the file where check is set, and returns what it
// printed. A file that makes bbolt fail fatally ends the subprocess, not
// the test; one that makes it hang is killed after 30 s.
func openInChild(t *testing.T, path string, check bool) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run", "^TestOpenChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), "TS_OPEN_CHILD="+path)
	if check {
		cmd.Env = append(cmd.Env, "TS_OPEN_CHILD_CHECK=1")
	}
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "the process died or hung:\n%.2000s", out)
	return string(out)
}

// bbolt loads a synced freelist at Open (read-write, and read-only with
// PreLoadFreelist) trusting it: a count of 2^34 was a fatal "out of
// memory" in bbolt.Open, which killed the process; a free page that is
// also in the tree was handed to the next write, which wrote over it
// (tokens lost, a page reached twice); a free page out of the file or a
// meta page, a panic or worse at the first write. Open refuses each with
// ErrCorrupt naming the freelist page, and leaves the file as it was.
func TestOpen_RefusesDamagedFreelist(t *testing.T) {
	dir := t.TempDir()
	// Revoked tokens free pages, so Close writes a freelist.
	base, clean, ps, hwm := baseFile(t, dir, 3000, func(db *DB, issued []Issued) {
		for _, tk := range issued[:300] {
			require.NoError(t, db.Revoke(context.Background(), tk.Token))
		}
	})
	br := branchRoot(t, base, "tokens")
	f, err := os.Open(base)
	require.NoError(t, err)
	newest, p := checkMeta(f, ps)
	require.NoError(t, f.Close())
	require.Empty(t, p)
	require.True(t, newest.synced(), "Close wrote no freelist")
	fl := newest.freelist
	count := uint64(binary.NativeEndian.Uint16(clean[fl*ps+10:]))
	require.NotZero(t, count)
	require.Less(t, (count+2)*8+pageHeader, ps, "the freelist fills its page")
	n := uint64(binary.NativeEndian.Uint16(clean[br*ps+10:]))
	leaf := binary.NativeEndian.Uint64(clean[br*ps+pageHeader+(n-1)*pageElement+8:])
	addFree := func(b []byte, id uint64) {
		binary.NativeEndian.PutUint64(b[fl*ps+pageHeader+count*8:], id)
		binary.NativeEndian.PutUint16(b[fl*ps+10:], uint16(count+1))
	}

	for _, c := range []struct {
		name, want string
		damage     func(b []byte)
	}{
		{"count of 2^34", fmt.Sprintf("%d page IDs do not fit in its 1 pages", uint64(1)<<34), func(b []byte) {
			binary.NativeEndian.PutUint16(b[fl*ps+10:], freelistCountMark)
			binary.NativeEndian.PutUint64(b[fl*ps+pageHeader:], 1<<34)
		}},
		{"count past the page", fmt.Sprintf("%d page IDs do not fit in its 1 pages", 0xFFFE), func(b []byte) {
			binary.NativeEndian.PutUint16(b[fl*ps+10:], 0xFFFE)
		}},
		{"a leaf of the tree", fmt.Sprintf("free page %d is also in the tree", leaf), func(b []byte) { addFree(b, leaf) }},
		{"the tokens bucket's root", fmt.Sprintf("free page %d is also in the tree", br), func(b []byte) { addFree(b, br) }},
		{"past the high-water mark", fmt.Sprintf("free page %d out of range [2, %d)", uint64(1)<<40, hwm), func(b []byte) { addFree(b, 1<<40) }},
		{"a meta page", fmt.Sprintf("free page 0 out of range [2, %d)", hwm), func(b []byte) { addFree(b, 0) }},
		{"not a freelist page", "not a freelist page (flags 0x2)", func(b []byte) {
			binary.NativeEndian.PutUint16(b[fl*ps+8:], leafPage)
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := bytes.Clone(clean)
			c.damage(b)
			path := filepath.Join(dir, "damaged.db")
			require.NoError(t, os.WriteFile(path, b, 0o600))
			out := openInChild(t, path, false)
			for _, ro := range []bool{true, false} {
				want := fmt.Sprintf("read-only %v: corrupt true: tokenstore: open %s: file is corrupt or not a tokenstore file: bbolt freelist page %d: %s\n", ro, path, fl, c.want)
				assert.Contains(t, out, want)
			}
			assertUnchanged(t, path, b)
		})
	}
}

// bbolt computes a file's size from its meta page as page count × page
// size in an int64: a count of 2^52 more pages than the file holds wraps
// to the file's own size, so the size check passed, and Check then ran
// bbolt's tx.Check over 2^52 pages (it never returned). A meta page with
// a valid checksum takes someone who wrote one, not a bit flip; Open
// refuses it all the same, in a subprocess here in case it hangs.
func TestOpen_RefusesHighWaterMarkThatWraps(t *testing.T) {
	dir := t.TempDir()
	_, clean, ps, _ := baseFile(t, dir, 0, nil)
	require.Zero(t, ps&(ps-1), "page size %d is no power of two", ps)

	for _, add := range []uint64{1 << 52, 1 << 53, 1 << 62} {
		t.Run(fmt.Sprint(add), func(t *testing.T) {
			b := bytes.Clone(clean)
			var want uint64
			for id := range uint64(2) {
				m := b[id*ps+pageHeader:]
				hwm := binary.NativeEndian.Uint64(m[40:]) + add
				binary.NativeEndian.PutUint64(m[40:], hwm)
				h := fnv.New64a()
				_, _ = h.Write(m[:metaSummed])
				binary.NativeEndian.PutUint64(m[metaSummed:], h.Sum64())
				want = max(want, hwm)
			}
			path := filepath.Join(dir, "damaged.db")
			require.NoError(t, os.WriteFile(path, b, 0o600))
			out := openInChild(t, path, true)
			for _, ro := range []bool{true, false} {
				assert.Contains(t, out, fmt.Sprintf("read-only %v: corrupt true: ", ro))
			}
			assert.Contains(t, out, fmt.Sprintf("the file holds %d pages of %d bytes, its header says %d (truncated?)", len(b)/int(ps), ps, want))
			assertUnchanged(t, path, b)
		})
	}
}

// A freelist of 0xFFFF IDs or more keeps its count in the first 8-byte
// slot (bbolt's freelist.Write): checkFreelist reads it so, across the
// chunks it reads the IDs in, and finds a bad ID past the first chunk.
func TestCheckFreelist_CountInFirstSlot(t *testing.T) {
	const ps, id, count, hwm = 4096, 2, 70_000, 1_000_000
	pages := (pageHeader + 8 + 8*count + ps - 1) / ps
	b := make([]byte, (id+pages)*ps)
	p := b[id*ps:]
	binary.NativeEndian.PutUint64(p, id)
	binary.NativeEndian.PutUint16(p[8:], freelistPage)
	binary.NativeEndian.PutUint16(p[10:], freelistCountMark)
	binary.NativeEndian.PutUint32(p[12:], uint32(pages-1))
	binary.NativeEndian.PutUint64(p[pageHeader:], count)
	for i := range uint64(count) {
		binary.NativeEndian.PutUint64(p[pageHeader+8+8*i:], 1000+i)
	}
	path := filepath.Join(t.TempDir(), "freelist")
	write := func() {
		require.NoError(t, os.WriteFile(path, b, 0o600))
	}
	check := func(tree pageSet) string {
		f, err := os.Open(path)
		require.NoError(t, err)
		defer f.Close()
		return checkFreelist(f, ps, hwm, id, tree)
	}
	tree := newPageSet(hwm)
	write()
	assert.Empty(t, check(tree))

	last := uint64(1000 + count - 1) // in the last chunk
	tree.add(last)
	assert.Equal(t, fmt.Sprintf("freelist page %d: free page %d is also in the tree", id, last), check(tree))
	tree = newPageSet(hwm)

	binary.NativeEndian.PutUint64(p[pageHeader+8+8*(freelistChunk+5):], id+3) // the freelist's own overflow page
	write()
	assert.Equal(t, fmt.Sprintf("freelist page %d: free page %d is the freelist's own", id, id+3), check(tree))

	binary.NativeEndian.PutUint64(p[pageHeader:], count+600) // past its pages
	write()
	assert.Equal(t, fmt.Sprintf("freelist page %d: %d page IDs do not fit in its %d pages", id, count+600, pages), check(tree))
}
