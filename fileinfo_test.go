package tokenstore_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tokenstore/tokenstore"
)

func TestDB_FileInfo_FreePagesSurviveReadOnlyReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "tokens.db")
	db, err := tokenstore.Open(path, &tokenstore.Options{SweepInterval: -1})
	require.NoError(t, err)
	reqs := make([]tokenstore.IssueRequest, 2000)
	for i := range reqs {
		reqs[i] = tokenstore.IssueRequest{Subject: "user"}
	}
	_, err = db.IssueBatch(ctx, reqs)
	require.NoError(t, err)
	n, err := db.RevokeSubject(ctx, "user")
	require.NoError(t, err)
	require.Equal(t, 2000, n)
	require.NoError(t, db.Close())

	ro, err := tokenstore.Open(path, &tokenstore.Options{ReadOnly: true})
	require.NoError(t, err)
	defer ro.Close()
	fi, err := ro.FileInfo(ctx)
	require.NoError(t, err)
	assert.Equal(t, path, fi.Path)
	assert.Positive(t, fi.PageSize)
	assert.GreaterOrEqual(t, fi.Size, int64(fi.Pages*fi.PageSize), "bbolt grows the file ahead of its pages")
	assert.Positive(t, fi.FreePages, "pages freed by the revocations")
	var names []string
	for _, b := range fi.Buckets {
		names = append(names, b.Name)
		if b.Name == "tokens" {
			assert.Zero(t, b.Keys)
		}
	}
	assert.Equal(t, []string{"expiry", "families", "ids", "meta", "subjects", "tokens", "tombdue", "tombstones"}, names)

	require.NoError(t, ro.Close())
	_, err = ro.FileInfo(ctx)
	require.ErrorIs(t, err, tokenstore.ErrClosed)
}
