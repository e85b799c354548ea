package main

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
)

type checkJSON struct {
	File     string   `json:"file"`
	OK       bool     `json:"ok"`
	Tokens   int64    `json:"tokens"`
	Problems []string `json:"problems"`
}

func TestCheck_Healthy(t *testing.T) {
	e := newEnv(t)
	e.issue("alice")
	e.issue("bob")
	got := e.run("", "check")
	assert.Equal(t, exitOK, got.code, got.stderr)
	assert.Equal(t, "ok: "+e.db+" passed bbolt's and tokenstore's checks (2 tokens)\n", got.stdout)

	got = e.run("", "check", "--json")
	assert.Equal(t, exitOK, got.code, got.stderr)
	var v checkJSON
	require.NoError(t, json.Unmarshal([]byte(got.stdout), &v))
	assert.Equal(t, checkJSON{File: e.db, OK: true, Tokens: 2, Problems: []string{}}, v)
}

func TestCheck_Damaged(t *testing.T) {
	e := newEnv(t)
	_, info := e.issue("alice")
	e.issue("bob")
	// Damage the file behind tokenstore's back: drop one index entry.
	bdb, err := bolt.Open(e.db, 0o600, nil)
	require.NoError(t, err)
	require.NoError(t, bdb.Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("subjects")).Delete(append([]byte("alice\x00"), info.ID[:]...))
	}))
	require.NoError(t, bdb.Close())

	got := e.run("", "check")
	assert.Equal(t, exitFailed, got.code)
	assert.Equal(t, "token "+info.ID.String()+": missing or wrong in the subjects index\n", got.stdout)
	assert.Equal(t, "tokenstore: "+e.db+": 1 problem found; check never repairs: restore a backup\n", got.stderr)

	got = e.run("", "check", "--json")
	assert.Equal(t, exitFailed, got.code)
	var v checkJSON
	require.NoError(t, json.Unmarshal([]byte(got.stdout), &v))
	assert.False(t, v.OK)
	assert.Len(t, v.Problems, 1)
}

func TestCheck_UsageAndMissing(t *testing.T) {
	e := newEnv(t)
	assert.Equal(t, exitUsage, e.run("", "check", "now").code)
	got := e.run("", "check")
	assert.Equal(t, exitFailed, got.code)
	assert.Contains(t, got.stderr, "does not exist")
	assert.False(t, e.exists())
}
