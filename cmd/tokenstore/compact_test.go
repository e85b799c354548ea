package main

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tokenstore/tokenstore"
)

func TestCompact(t *testing.T) {
	e := newEnv(t)
	keep, _ := e.issue("keep")
	db := e.open()
	reqs := make([]tokenstore.IssueRequest, 5000)
	for i := range reqs {
		reqs[i] = tokenstore.IssueRequest{Subject: "mass", Metadata: map[string]string{"pad": "0123456789abcdef0123456789abcdef"}}
	}
	ctx := context.Background()
	_, err := db.IssueBatch(ctx, reqs)
	require.NoError(t, err)
	_, err = db.RevokeSubject(ctx, "mass")
	require.NoError(t, err)
	require.NoError(t, db.Close())

	got := e.run("", "compact", "--json")
	require.Equal(t, exitOK, got.code, got.stderr)
	var v struct {
		File          string `json:"file"`
		Before, After int64
	}
	require.NoError(t, json.Unmarshal([]byte(got.stdout), &v))
	assert.Equal(t, e.db, v.File)
	assert.Less(t, v.After, v.Before/4, "the freed pages are gone")

	got = e.run("", "compact")
	require.Equal(t, exitOK, got.code, got.stderr)
	assert.Regexp(t, `^compacted .*tokens\.db: \d+\.\d KiB → \d+\.\d KiB \(.* freed\)\n$`, got.stdout)

	_, err = e.lookup(keep)
	assert.NoError(t, err, "the live token survives compaction")
	assert.Equal(t, exitOK, e.run("", "check").code)
}

func TestCompact_Errors(t *testing.T) {
	e := newEnv(t)
	got := e.run("", "compact")
	assert.Equal(t, exitFailed, got.code)
	assert.Contains(t, got.stderr, "does not exist")
	assert.False(t, e.exists(), "compact must not create the file")
	assert.Equal(t, exitUsage, e.run("", "compact", "now").code)
}
