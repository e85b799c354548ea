package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// What a new user meets before the code: the module path, the license, the
// changelog and the README (issue 14).

// repoFile reads a file at the repository's root.
func repoFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", name))
	require.NoError(t, err)
	return string(b)
}

func TestRepo_ModulePath(t *testing.T) {
	mod := repoFile(t, "go.mod")
	assert.True(t, strings.HasPrefix(mod, "module github.com/tokenstore/tokenstore\n"), "go.mod: %.60s", mod)
}

func TestRepo_License(t *testing.T) {
	lic := repoFile(t, "LICENSE")
	assert.True(t, strings.HasPrefix(lic, "The MIT License (MIT)\n"))
	assert.Regexp(t, `(?m)^Copyright \(c\) \d{4} The tokenstore authors$`, lic)
	assert.Contains(t, lic, `THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND`)
}

// TestRepo_ChangelogMatchesVersion: the newest CHANGELOG entry is the
// version the built binary reports.
func TestRepo_ChangelogMatchesVersion(t *testing.T) {
	m := regexp.MustCompile(`(?m)^## \[(v\d+\.\d+\.\d+[^\]]*)\]`).FindStringSubmatch(repoFile(t, "CHANGELOG.md"))
	require.Len(t, m, 2, "CHANGELOG.md has a version heading")

	got := newCLI(t).run("", "version", "--json")
	require.Equal(t, exitOK, got.code, got.stderr)
	var v buildInfo
	require.NoError(t, json.Unmarshal([]byte(got.stdout), &v))
	assert.Equal(t, m[1], v.Version)
	got = newCLI(t).run("", "version")
	assert.True(t, strings.HasPrefix(got.stdout, "tokenstore "+m[1]+" ("), got.stdout)
}

// TestRepo_ReadmeServesAUserFirst: the first 150 lines are enough to add
// the store, embed it and operate it; test and benchmark internals live in
// docs/.
func TestRepo_ReadmeServesAUserFirst(t *testing.T) {
	readme := repoFile(t, "README.md")
	lines := strings.Split(readme, "\n")
	require.Greater(t, len(lines), 150)
	first := strings.Join(lines[:150], "\n")

	for _, want := range []string{
		"go get github.com/tokenstore/tokenstore",
		"go run ./cmd/tokenstore bench",
		"go test ./...",
		"## Quick start",
		"tokenstore.Open(",
		"db.Validate(ctx, token)",
		"## Guarantees",
		"tokenstore.Middleware(db)",
		"## The `tokenstore` command",
		"**Revoking while running.**",
		"**Backups.**",
		"**Upgrades.**",
		"**Moving to Redis.**",
		"redisstore.New(",
	} {
		assert.Contains(t, first, want)
	}
	// The first screen: what it is, how to add it, and two commands.
	screen := strings.Join(lines[:20], "\n")
	assert.Contains(t, screen, "go get github.com/tokenstore/tokenstore")
	block := regexp.MustCompile("(?s)two commands.*?```sh\n(.*?)```").FindStringSubmatch(screen)
	require.Len(t, block, 2, "a block of commands on the first screen")
	assert.Equal(t, 2, strings.Count(block[1], "\n"), "exactly two commands: %q", block[1])

	// Internals moved out.
	// The user guide with its Redis, scopes, gRPC and admin sections; the
	// old README, internals included, was 675 lines.
	assert.Less(t, len(lines), 450, "README.md is for users; internals go to docs/")
	for _, internal := range []string{"### What each test does and shows", "-crash.rounds", "### bbolt knobs tried", "ns/op"} {
		assert.NotContains(t, readme, internal)
	}
	assert.Contains(t, repoFile(t, "docs/testing.md"), "### What each test does and shows")
	assert.Contains(t, repoFile(t, "docs/benchmarks-v1.md"), "### bbolt knobs tried")
}
