package main

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tokenstore/tokenstore"
)

// TestExpiring on a file: live tokens whose deadline falls within the
// window, soonest first; expired ones and later ones left out.
func TestExpiring(t *testing.T) {
	e := newEnv(t)
	_, day := e.issue("alice", tokenstore.WithPolicy(tokenstore.Absolute(24*time.Hour)))
	_, hour := e.issue("bob", tokenstore.WithPolicy(tokenstore.Absolute(time.Hour)), tokenstore.WithMetadata(map[string]string{"scope": "deploy"}))
	_, month := e.issue("carol", tokenstore.WithPolicy(tokenstore.Absolute(30*24*time.Hour)))
	_, gone := e.issue("dave", tokenstore.WithPolicy(tokenstore.Absolute(time.Minute)))
	e.now = e.now.Add(2 * time.Minute) // dave's has expired, not swept

	got := e.run("", "expiring", "--within", "2d")
	require.Equal(t, exitOK, got.code, got.stderr)
	assert.Equal(t, "ID                                    FAMILY                                SUBJECT  CREATED               LAST USED  EXPIRES               POLICY        METADATA\n"+
		hour.ID.String()+"  "+hour.FamilyID.String()+"  bob      2030-01-02T03:04:05Z  never      2030-01-02T04:04:05Z  absolute(1h)  scope=deploy\n"+
		day.ID.String()+"  "+day.FamilyID.String()+"  alice    2030-01-02T03:04:05Z  never      2030-01-03T03:04:05Z  absolute(1d)  \n", got.stdout)
	assert.Empty(t, got.stderr)

	got = e.run("", "expiring", "--within", "60d", "--json")
	require.Equal(t, exitOK, got.code, got.stderr)
	var ids []string
	for _, r := range decodeLines[infoJSON](t, got.stdout) {
		ids = append(ids, r.ID)
		assert.False(t, r.Expired)
	}
	assert.Equal(t, []string{hour.ID.String(), day.ID.String(), month.ID.String()}, ids)
	assert.NotContains(t, got.stdout, gone.ID.String())

	// The default window is 7 days.
	got = e.run("", "expiring")
	require.Equal(t, exitOK, got.code, got.stderr)
	assert.Contains(t, got.stdout, day.ID.String())
	assert.NotContains(t, got.stdout, month.ID.String())

	got = e.run("", "expiring", "--within", "30m")
	assert.Equal(t, exitOK, got.code)
	assert.Empty(t, got.stdout)
	assert.Equal(t, "no live tokens expire within 30m\n", got.stderr)
	got = e.run("", "expiring", "--within", "30m", "--json")
	assert.Equal(t, exitOK, got.code)
	assert.Empty(t, got.stdout, "no lines: no tokens")

	got = e.run("", "expiring", "--within", "0s")
	assert.Equal(t, exitUsage, got.code)
	assert.Contains(t, got.stderr, "--within 0s: give a positive duration such as 7d or 36h")

	got = e.run("", "expiring", "--within", "23h", "--json")
	require.Equal(t, exitOK, got.code, got.stderr)
	var row map[string]any
	require.NoError(t, json.Unmarshal([]byte(got.stdout), &row))
	assert.Equal(t, "bob", row["subject"], "one line: the 1h token")
}
