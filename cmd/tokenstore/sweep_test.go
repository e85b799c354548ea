package main

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tokenstore/tokenstore"
)

func TestSweep(t *testing.T) {
	e := newEnv(t)
	short := tokenstore.WithPolicy(tokenstore.Absolute(time.Hour))
	e.issue("alice", short)
	e.issue("alice", short)
	e.issue("bob", short)
	live, _ := e.issue("bob")

	tests := []struct {
		name       string
		at         time.Duration
		args       []string
		wantCode   int
		wantStdout string
	}{
		{"nothing expired yet", 30 * time.Minute, nil, exitOK, `^swept 0 expired tokens in \S+\n$`},
		{"three expired", 2 * time.Hour, nil, exitOK, `^swept 3 expired tokens in \S+\n$`},
		{"again: none left", 2 * time.Hour, nil, exitOK, `^swept 0 expired tokens in `},
		{"argument", 2 * time.Hour, []string{"now"}, exitUsage, `^$`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.now = t0.Add(tt.at)
			got := e.run("", append([]string{"sweep"}, tt.args...)...)
			assert.Equal(t, tt.wantCode, got.code, got.stderr)
			assert.Regexp(t, tt.wantStdout, got.stdout)
		})
	}
	_, err := e.lookup(live)
	assert.NoError(t, err, "a live token survives the sweep")
}

func TestSweep_JSON(t *testing.T) {
	e := newEnv(t)
	e.issue("alice", tokenstore.WithPolicy(tokenstore.Absolute(time.Hour)))
	e.now = t0.Add(time.Hour)
	got := e.run("", "sweep", "--json")
	require.Equal(t, exitOK, got.code, got.stderr)
	var v struct {
		Swept   int     `json:"swept"`
		Seconds float64 `json:"seconds"`
	}
	require.NoError(t, json.Unmarshal([]byte(got.stdout), &v))
	assert.Equal(t, 1, v.Swept)
	assert.GreaterOrEqual(t, v.Seconds, 0.0)
}

func TestSweep_MissingFile(t *testing.T) {
	e := newEnv(t)
	got := e.run("", "sweep")
	assert.Equal(t, exitFailed, got.code)
	assert.False(t, e.exists())
}
