package main

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tokenstore/tokenstore"
)

func TestStats(t *testing.T) {
	e := newEnv(t)
	hour := tokenstore.WithPolicy(tokenstore.Absolute(time.Hour))
	e.issue("alice", hour)
	e.issue("alice", hour)
	e.issue("bob")
	e.now = t0.Add(2 * time.Hour)

	got := e.run("", "stats")
	require.Equal(t, exitOK, got.code, got.stderr)
	for _, re := range []string{
		`(?m)^file +` + e.db + `$`,
		`(?m)^size +\d+\.\d KiB \(\d+ bytes\)$`,
		`(?m)^tokens +3$`,
		`(?m)^  live +1$`,
		`(?m)^  expired +2 \(not swept yet: tokenstore sweep deletes them\)$`,
		`(?m)^  absolute\(1h\) +2\n  sliding\(idle=14d, max=30d\) +1$`,
		`(?m)^bbolt pages +\d+ of \d+ bytes, \d+ free`,
		`(?m)^bucket +keys +depth +pages +bytes in use$`,
		`(?m)^tokens +3 +1 +inline +-$`,
	} {
		assert.Regexp(t, re, got.stdout)
	}

	got = e.run("", "stats", "--json")
	require.Equal(t, exitOK, got.code, got.stderr)
	var v statsJSON
	require.NoError(t, json.Unmarshal([]byte(got.stdout), &v))
	assert.Equal(t, e.db, v.File)
	assert.Positive(t, v.Size)
	assert.Equal(t, 3, v.Tokens.Total)
	require.NotNil(t, v.Tokens.Live)
	require.NotNil(t, v.Tokens.Expired)
	assert.Equal(t, 1, *v.Tokens.Live)
	assert.Equal(t, 2, *v.Tokens.Expired)
	assert.Equal(t, map[string]int{"absolute(1h)": 2, "sliding(idle=14d, max=30d)": 1}, v.Tokens.Policies)
	assert.Positive(t, v.Bolt.PageSize)
	assert.Positive(t, v.Bolt.Pages)
	var names []string
	for _, b := range v.Bolt.Buckets {
		names = append(names, b.Name)
	}
	assert.Equal(t, []string{"expiry", "families", "ids", "meta", "subjects", "tokens", "tombdue", "tombstones"}, names)
}

func TestStats_EmptyFile(t *testing.T) {
	e := newEnv(t)
	require.NoError(t, e.open().Close())
	got := e.run("", "stats")
	require.Equal(t, exitOK, got.code, got.stderr)
	assert.Regexp(t, `(?m)^tokens +0$`, got.stdout)
	assert.Regexp(t, `(?m)^  expired +0$`, got.stdout)
}
