package tokenstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
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

// A branch page whose element points back at itself, or at a page the
// tree reaches elsewhere, makes bbolt's search recurse until Go's stack
// limit: a fatal error that no recover reaches, which the hostile-files
// test hit in a Validate that revoked a family. A branch key that is not
// its child's first key makes a later write build such a loop (the
// hostile-files test's second stack overflow, in a Validate and in a
// Sweep). Open refuses such a file, read-write and read-only, and leaves
// it as it was.
func TestOpen_RefusesCyclicTree(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	base := filepath.Join(dir, "base.db")
	db, err := Open(base, &Options{SweepInterval: -1})
	require.NoError(t, err)
	reqs := make([]IssueRequest, 3000)
	for i := range reqs {
		reqs[i] = IssueRequest{Subject: fmt.Sprintf("user-%d", i)}
	}
	_, err = db.IssueBatch(ctx, reqs)
	require.NoError(t, err)
	require.NoError(t, db.Close())
	clean, err := os.ReadFile(base)
	require.NoError(t, err)

	branches, roots := branchRoots(t, base)
	require.NotEmpty(t, branches["tokens"], "the tokens bucket's root is no branch page: issue more tokens")
	bdb, err := bolt.Open(base, 0o600, &bolt.Options{ReadOnly: true})
	require.NoError(t, err)
	ps := uint64(bdb.Info().PageSize)
	require.NoError(t, bdb.Close())

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
				for _, ro := range []bool{false, true} {
					db, err := Open(path, &Options{SweepInterval: -1, ReadOnly: ro})
					if err == nil {
						_ = db.Close()
					}
					require.Error(t, err, "read-only %v", ro)
					assert.True(t, errors.Is(err, ErrCorrupt), "read-only %v: %v", ro, err)
					assert.Contains(t, err.Error(), fmt.Sprintf("page %d: ", to))
				}
				after, err := os.ReadFile(path)
				require.NoError(t, err)
				assert.True(t, bytes.Equal(b, after), "Open changed the file it refused")
			})
		}
	}
}

// A flag bit flipped in the top level's leaf turns a bucket of families
// into a plain key: Open, which creates the buckets of families a file of
// an earlier version lacks, got bbolt's "incompatible value" and returned
// it as is, where a damaged file is ErrCorrupt (the hostile-files test).
func TestOpen_BucketTurnedValueIsCorrupt(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "t.db")
	db, err := Open(path, &Options{SweepInterval: -1})
	require.NoError(t, err)
	require.NoError(t, db.Close())
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	bdb, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	require.NoError(t, err)
	ps := uint64(bdb.Info().PageSize)
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
	after, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.True(t, bytes.Equal(b, after), "Open changed the file it refused")
}
