package main

import (
	"encoding/json"
	"runtime"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestVersion(t *testing.T) {
	e := newEnv(t)
	got := e.run("", "version")
	require.Equal(t, exitOK, got.code, got.stderr)
	assert.Regexp(t, `^tokenstore \S+ \(go\S+ \w+/\w+(, commit [0-9a-f]+(\+dirty)?)?\)\n$`, got.stdout)

	got = e.run("", "version", "--json")
	require.Equal(t, exitOK, got.code, got.stderr)
	var v buildInfo
	require.NoError(t, json.Unmarshal([]byte(got.stdout), &v))
	assert.NotEmpty(t, v.Version)
	assert.Equal(t, runtime.Version(), v.Go)

	assert.Equal(t, exitUsage, e.run("", "version", "x").code)
	assert.False(t, e.exists(), "version does not touch the file")
}

func TestVersion_LDFlags(t *testing.T) {
	defer func(v string) { version = v }(version)
	version = "v1.2.3"
	assert.Regexp(t, `^v1\.2\.3 \(`, versionString())
}
