package tokenstore

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
)

// txID is the file's last committed transaction, read without writing.
func txID(t *testing.T, path string) int {
	t.Helper()
	b, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	require.NoError(t, err)
	defer b.Close()
	var id int
	require.NoError(t, b.View(func(tx *bolt.Tx) error { id = tx.ID(); return nil }))
	return id
}

// The store does not write bbolt's freelist while it runs, and Close
// writes it: a bbolt that does write it then opens the file without
// committing anything (it commits once when it finds none).
func TestDB_Close_WritesFreelist(t *testing.T) {
	path := filepath.Join(t.TempDir(), "t.db")
	db, err := Open(path, &Options{SweepInterval: -1})
	require.NoError(t, err)
	for range 3 {
		_, _, err := db.Issue(context.Background(), "alice")
		require.NoError(t, err)
	}
	require.NoError(t, db.Close())

	before := txID(t, path)
	b, err := bolt.Open(path, 0o600, nil)
	require.NoError(t, err)
	require.NoError(t, b.Close())
	assert.Equal(t, before, txID(t, path), "bbolt found no freelist and wrote one")
}

// A member that refuses does not roll back the group: the others commit in
// the same transaction, and the refusal is its answer.
func TestCommitter_Commit_RefusalCommitsTheOthers(t *testing.T) {
	b, err := bolt.Open(filepath.Join(t.TempDir(), "t.db"), 0o600, nil)
	require.NoError(t, err)
	defer b.Close()
	require.NoError(t, b.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucket([]byte("b"))
		return err
	}))
	put := func(k string) func(*bolt.Tx) error {
		return func(tx *bolt.Tx) error { return tx.Bucket([]byte("b")).Put([]byte(k), []byte("v")) }
	}
	runs := 0
	refusing := func(tx *bolt.Tx) error {
		runs++
		return refuse(ErrNotFound)
	}
	c := &committer{db: b}
	group := []*call{
		{fn: put("a"), lead: true},
		{fn: refusing, done: make(chan struct{})},
		{fn: put("c"), done: make(chan struct{})},
	}
	c.commit(group)

	assert.NoError(t, group[0].err)
	assert.ErrorIs(t, group[1].err, ErrNotFound)
	assert.False(t, errors.As(group[1].err, new(*groupRefusal)), "the caller sees the error, not the marker")
	assert.NoError(t, group[2].err)
	assert.Equal(t, 1, runs, "the group ran once: no rollback and retry")
	require.NoError(t, b.View(func(tx *bolt.Tx) error {
		assert.NotNil(t, tx.Bucket([]byte("b")).Get([]byte("a")))
		assert.NotNil(t, tx.Bucket([]byte("b")).Get([]byte("c")))
		return nil
	}))
}
