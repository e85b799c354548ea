package tokenstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
)

// branchRoots returns, for each bucket whose root is a branch page, that
// page's ID, and every bucket's root page.
func branchRoots(t *testing.T, path string) (branches map[string]uint64, roots []uint64) {
	t.Helper()
	b, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, PreLoadFreelist: true})
	require.NoError(t, err)
	defer b.Close()
	branches = map[string]uint64{}
	require.NoError(t, b.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, bk *bolt.Bucket) error {
			root := uint64(bk.Root())
			if root == 0 {
				return nil // inline
			}
			roots = append(roots, root)
			p, err := tx.Page(int(root))
			if err != nil {
				return err
			}
			if p.Type == "branch" {
				branches[string(name)] = root
			}
			return nil
		})
	}))
	return branches, roots
}

// baseFile issues n tokens (subjects user-0, user-1, …) into a new file
// dir/base.db, lets prepare (when not nil) work on the open store, closes
// it and returns the file's path and bytes, its page size and its
// high-water mark in pages: the clean file the Open-refuses tests damage
// copies of.
func baseFile(t *testing.T, dir string, n int, prepare func(db *DB, issued []Issued)) (path string, clean []byte, ps, hwm uint64) {
	t.Helper()
	path = filepath.Join(dir, "base.db")
	db, err := Open(path, &Options{SweepInterval: -1})
	require.NoError(t, err)
	var issued []Issued
	if n > 0 {
		reqs := make([]IssueRequest, n)
		for i := range reqs {
			reqs[i] = IssueRequest{Subject: fmt.Sprintf("user-%d", i)}
		}
		issued, err = db.IssueBatch(context.Background(), reqs)
		require.NoError(t, err)
	}
	if prepare != nil {
		prepare(db, issued)
	}
	require.NoError(t, db.Close())
	clean, err = os.ReadFile(path)
	require.NoError(t, err)
	bdb, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	require.NoError(t, err)
	ps = uint64(bdb.Info().PageSize)
	require.NoError(t, bdb.View(func(tx *bolt.Tx) error { hwm = uint64(tx.Size()) / ps; return nil }))
	require.NoError(t, bdb.Close())
	return path, clean, ps, hwm
}

// branchRoot returns the ID of bucket's root page in the file at path,
// and fails the test where that root is no branch page.
func branchRoot(t *testing.T, path, bucket string) uint64 {
	t.Helper()
	branches, _ := branchRoots(t, path)
	br := branches[bucket]
	require.NotZero(t, br, "the %s bucket's root is no branch page: issue more tokens", bucket)
	return br
}

// assertUnchanged asserts that the file at path still holds b.
func assertUnchanged(t *testing.T, path string, b []byte) {
	t.Helper()
	after, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.True(t, bytes.Equal(b, after), "Open changed the file it refused")
}

// assertOpenRefuses opens the file at path, which holds b, read-write and
// read-only, and asserts each Open fails with ErrCorrupt naming want and
// leaves the file as it was.
func assertOpenRefuses(t *testing.T, path string, b []byte, want string) {
	t.Helper()
	for _, ro := range []bool{false, true} {
		db, err := Open(path, &Options{SweepInterval: -1, ReadOnly: ro})
		if err == nil {
			_ = db.Close()
		}
		require.Error(t, err, "read-only %v", ro)
		assert.True(t, errors.Is(err, ErrCorrupt), "read-only %v: %v", ro, err)
		assert.Contains(t, err.Error(), want, "read-only %v", ro)
	}
	assertUnchanged(t, path, b)
}

// assertWalksFind runs the shape walk Open runs and Check's full walk over
// the file at path and asserts each reports a problem naming want; each,
// when not nil, checks each walk's problems further.
func assertWalksFind(t *testing.T, path, want string, each func(shape bool, problems []string)) {
	t.Helper()
	bdb, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	require.NoError(t, err)
	require.NoError(t, bdb.View(func(tx *bolt.Tx) error {
		for _, shape := range []bool{true, false} {
			p := walkPages(path, tx, shape)
			if each != nil {
				each(shape, p)
			}
			assert.True(t, slices.ContainsFunc(p, func(q string) bool { return strings.Contains(q, want) }), "shape %v: %q lacks %q", shape, p, want)
		}
		return nil
	}))
	require.NoError(t, bdb.Close())
}

// A branch page whose element points back at itself, or at a page the
// tree reaches elsewhere, makes bbolt's search recurse until Go's stack
// limit: a fatal error that no recover reaches, which the hostile-files
// test hit in a Validate that revoked a family. A branch key that is not
// its child's first key makes a later write build such a loop (the
// hostile-files test's second stack overflow, in a Validate and in a
// Sweep). Open refuses such a file, read-write and read-only, and leaves
// it as it was.
func TestOpen_RefusesCyclicTree(t *testing.T) {
	dir := t.TempDir()
	base, clean, ps, _ := baseFile(t, dir, 3000, nil)
	branches, roots := branchRoots(t, base)
	require.NotZero(t, branches["tokens"], "the tokens bucket's root is no branch page: issue more tokens")

	for name, page := range branches {
		for _, target := range []string{"itself", "another bucket's root", "a key flipped"} {
			t.Run(name+"/"+target, func(t *testing.T) {
				b := bytes.Clone(clean)
				at := page*ps + pageHeader + 8 // element 0's page ID
				to := page
				switch target {
				case "another bucket's root":
					to = roots[0]
					if to == page {
						to = roots[1]
					}
				case "a key flipped":
					// Element 1's key, no longer its child's first key: a
					// write that rewrites the child adds an element where
					// it should replace this one (see pageWalker.page).
					e := page*ps + pageHeader + pageElement
					to = binary.NativeEndian.Uint64(b[e+8:])
					pos, ksize := uint64(binary.NativeEndian.Uint32(b[e:])), uint64(binary.NativeEndian.Uint32(b[e+4:]))
					b[e+pos+ksize-1] ^= 1
				}
				if target != "a key flipped" {
					binary.NativeEndian.PutUint64(b[at:], to)
				}
				path := filepath.Join(dir, name+"-"+target+".db")
				require.NoError(t, os.WriteFile(path, b, 0o600))
				assertOpenRefuses(t, path, b, fmt.Sprintf("page %d: ", to))
			})
		}
	}
}

// A flag bit flipped in the top level's leaf turns a bucket of families
// into a plain key: Open, which creates the buckets of families a file of
// an earlier version lacks, got bbolt's "incompatible value" and returned
// it as is, where a damaged file is ErrCorrupt (the hostile-files test).
func TestOpen_BucketTurnedValueIsCorrupt(t *testing.T) {
	path, b, ps, _ := baseFile(t, t.TempDir(), 0, nil)
	bdb, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	require.NoError(t, err)
	var root uint64
	require.NoError(t, bdb.View(func(tx *bolt.Tx) error { root = uint64(tx.Cursor().Bucket().Root()); return nil }))
	require.NoError(t, bdb.Close())

	page := b[root*ps : (root+1)*ps]
	require.Equal(t, uint16(leafPage), binary.NativeEndian.Uint16(page[8:]))
	found := false
	for i := range int(binary.NativeEndian.Uint16(page[10:])) {
		e := page[pageHeader+i*pageElement:]
		pos, ksize := binary.NativeEndian.Uint32(e[4:]), binary.NativeEndian.Uint32(e[8:])
		at := uint32(pageHeader+i*pageElement) + pos
		if string(page[at:at+ksize]) == string(bucketTombDue) {
			binary.NativeEndian.PutUint32(e, binary.NativeEndian.Uint32(e)&^bucketLeaf)
			found = true
		}
	}
	require.True(t, found, "no %s bucket in the top-level leaf", bucketTombDue)
	require.NoError(t, os.WriteFile(path, b, 0o600))

	_, err = Open(path, &Options{SweepInterval: -1})
	require.Error(t, err)
	assert.True(t, errors.Is(err, ErrCorrupt), "%v", err)
	assertUnchanged(t, path, b)
}

// The walk reads a level's pages in runs (pageWalker.fill): each fault a
// page in the middle of a run can carry is named on that page, and the
// pages read beside it in the same run are found sound, by the shape walk
// Open runs (the first problem is what Open reports) and by Check's.
func TestOpen_RefusesDamagedPageInARun(t *testing.T) {
	dir := t.TempDir()
	base, clean, ps, hwm := baseFile(t, dir, 3000, nil)
	branch := branchRoot(t, base, "tokens")

	// A leaf of the tokens bucket with leaves of it on either side, near
	// enough (readGap) that the three share a read.
	children := map[uint64]uint64{} // a leaf -> its branch element's offset in the file
	var descend func(branch uint64)
	descend = func(branch uint64) {
		for i := range uint64(binary.NativeEndian.Uint16(clean[branch*ps+10:])) {
			at := branch*ps + pageHeader + i*pageElement
			child := binary.NativeEndian.Uint64(clean[at+8:])
			if binary.NativeEndian.Uint16(clean[child*ps+8:]) == branchPage {
				descend(child)
			} else {
				children[child] = at
			}
		}
	}
	descend(branch)
	ids := slices.Sorted(maps.Keys(children))
	var leaf, next uint64
	for i := 1; i+1 < len(ids) && leaf == 0; i++ {
		if ids[i]-ids[i-1] <= readGap && ids[i+1]-ids[i] <= readGap && binary.NativeEndian.Uint16(clean[ids[i]*ps+8:]) == leafPage {
			leaf, next = ids[i], ids[i+1]
		}
	}
	require.NotZero(t, leaf, "no three leaves of the tokens bucket near each other: %v", ids)

	for _, c := range []struct {
		name, want string
		page       uint64
		damage     func(b []byte)
	}{
		{"header names another page", "says it is page", leaf, func(b []byte) {
			binary.NativeEndian.PutUint64(b[leaf*ps:], leaf+1000)
		}},
		{"overflow past the high-water mark", fmt.Sprintf("%d overflow pages run past the high-water mark %d", 1<<30, hwm), leaf, func(b []byte) {
			binary.NativeEndian.PutUint32(b[leaf*ps+12:], 1<<30)
		}},
		{"overflow over its neighbour", fmt.Sprintf("its overflow page %d is reached twice", next), leaf, func(b []byte) {
			binary.NativeEndian.PutUint32(b[leaf*ps+12:], uint32(next-leaf))
		}},
		{"first key not its parent's", "its first key is not the key its parent gives it", leaf, func(b []byte) {
			e := leaf*ps + pageHeader
			pos, ksize := uint64(binary.NativeEndian.Uint32(b[e+4:])), uint64(binary.NativeEndian.Uint32(b[e+8:]))
			b[e+pos+ksize-1] ^= 1
		}},
		{"neither branch nor leaf", "its first key is not the key its parent gives it", leaf, func(b []byte) {
			binary.NativeEndian.PutUint16(b[leaf*ps+8:], 0x40)
		}},
		{"branch element out of range", fmt.Sprintf("out of range [2, %d)", hwm), hwm + 7, func(b []byte) {
			binary.NativeEndian.PutUint64(b[children[leaf]+8:], hwm+7)
		}},
		{"branch element to a neighbour", "reached twice", next, func(b []byte) {
			binary.NativeEndian.PutUint64(b[children[leaf]+8:], next)
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := bytes.Clone(clean)
			c.damage(b)
			path := filepath.Join(dir, "damaged.db")
			require.NoError(t, os.WriteFile(path, b, 0o600))
			want := fmt.Sprintf("page %d: %s", c.page, c.want)

			assertWalksFind(t, path, want, func(shape bool, p []string) {
				// Each problem names the damaged page, none its
				// neighbours; two references to one page can fail
				// twice (reached twice, and a first key not theirs).
				require.NotEmpty(t, p, "shape %v", shape)
				for _, q := range p {
					assert.Contains(t, q, fmt.Sprintf("page %d: ", c.page), "shape %v: %q", shape, p)
				}
			})
			assertOpenRefuses(t, path, b, fmt.Sprintf("page %d: ", c.page))
		})
	}
}

// A read of a run that fails part way (here: the file cut short under an
// open transaction, as a failing disk would return EIO) keeps the pages
// it read whole; each page past the failure is read again alone, so the
// problems name exactly the pages that could not be read.
func TestCheckPages_ShortRunNamesTheUnreadPages(t *testing.T) {
	path, _, ps, _ := baseFile(t, t.TempDir(), 3000, nil)

	bdb, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	require.NoError(t, err)
	defer bdb.Close()
	require.NoError(t, bdb.View(func(tx *bolt.Tx) error {
		require.Empty(t, walkPages(path, tx, false))
		hwm := uint64(tx.Size()) / ps
		cut := hwm - hwm/4
		// Only walkPages reads the file from here: the transaction's
		// mapping is not touched past its meta page.
		require.NoError(t, os.Truncate(path, int64(cut*ps)))
		for _, shape := range []bool{true, false} {
			p := walkPages(path, tx, shape)
			require.NotEmpty(t, p, "shape %v", shape)
			for _, q := range p {
				var id uint64
				_, err := fmt.Sscanf(q, "bbolt: page %d: EOF", &id)
				if assert.NoError(t, err, "shape %v: %q", shape, q) {
					assert.GreaterOrEqual(t, id, cut, "shape %v: %q", shape, q)
				}
			}
		}
		return nil
	}))
}

// A page of the tree with no elements carries no child for the walk to
// follow, but bbolt's cursor does not look at the count on its way down:
// a branch page of count 0 sends First (and a search) to the child its
// first element slot still holds. Pointing at the page itself, that was a
// Check that never returned, on a file Open had accepted. A page of the
// tree that is neither a branch nor a leaf is refused whatever its count.
func TestOpen_RefusesEmptyBranch(t *testing.T) {
	dir := t.TempDir()
	base, clean, ps, _ := baseFile(t, dir, 3000, nil)
	br := branchRoot(t, base, "tokens")

	for _, c := range []struct {
		name, want string
		flags      uint16
	}{
		{"a branch", "a branch page with no elements", branchPage},
		{"a freelist page", "neither a branch nor a leaf (flags 0x10)", 0x10},
		{"flags 0x40", "neither a branch nor a leaf (flags 0x40)", 0x40},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := bytes.Clone(clean)
			binary.NativeEndian.PutUint16(b[br*ps+8:], c.flags)
			binary.NativeEndian.PutUint16(b[br*ps+10:], 0)
			binary.NativeEndian.PutUint64(b[br*ps+pageHeader+8:], br) // element 0's child: the page itself
			path := filepath.Join(dir, "damaged.db")
			require.NoError(t, os.WriteFile(path, b, 0o600))
			want := fmt.Sprintf("page %d: %s", br, c.want)

			assertWalksFind(t, path, want, nil)
			assertOpenRefuses(t, path, b, want)
		})
	}
}

// A branch page whose keys are out of order passed the walk: each element
// still led to a page whose first key was its own. bbolt searches a branch
// by binary search, and a write that rewrites a child finds the child's
// element that way: it missed, added an element instead, and left the old
// one pointing at a page it freed (in a subprocess: revoking the file's
// tokens one by one, Check then found a page reached twice, the start of
// the loop TestOpen_RefusesCyclicTree is about). Open refuses it.
func TestOpen_RefusesBranchKeysOutOfOrder(t *testing.T) {
	dir := t.TempDir()
	base, clean, ps, _ := baseFile(t, dir, 3000, nil)
	br := branchRoot(t, base, "ids")

	b := bytes.Clone(clean)
	n := uint64(binary.NativeEndian.Uint16(b[br*ps+10:]))
	require.GreaterOrEqual(t, n, uint64(4), "the ids bucket's root has %d elements: issue more tokens", n)
	// Elements 1 and n-2 trade keys and children: every element still
	// leads to a page that begins with its key.
	e1, e2 := br*ps+pageHeader+pageElement, br*ps+pageHeader+(n-2)*pageElement
	key := func(e uint64) []byte {
		return b[e+uint64(binary.NativeEndian.Uint32(b[e:])):][:binary.NativeEndian.Uint32(b[e+4:])]
	}
	k1, k2 := key(e1), key(e2)
	require.Len(t, k2, len(k1), "ids keys of different lengths")
	tmp := bytes.Clone(k1)
	copy(k1, k2)
	copy(k2, tmp)
	c1 := binary.NativeEndian.Uint64(b[e1+8:])
	binary.NativeEndian.PutUint64(b[e1+8:], binary.NativeEndian.Uint64(b[e2+8:]))
	binary.NativeEndian.PutUint64(b[e2+8:], c1)
	path := filepath.Join(dir, "damaged.db")
	require.NoError(t, os.WriteFile(path, b, 0o600))
	want := fmt.Sprintf("page %d: element 2's key is not after element 1's", br)

	assertWalksFind(t, path, want, nil)
	assertOpenRefuses(t, path, b, want)
}
