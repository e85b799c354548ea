package main

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// The tests that run the built binary, as an operator does. The binary is
// built once per test run, into a directory every user may read, so that
// the permission tests can run it as another user.

var (
	binOnce sync.Once
	binDir  string // removed by TestMain
	binPath string
	binErr  error
)

// binary returns the path of the tokenstore binary built from this
// package.
func binary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		if binPath = os.Getenv("TOKENSTORE_TEST_BINARY"); binPath != "" {
			// Another build under test, e.g. an older one to show what a
			// test catches: TOKENSTORE_TEST_BINARY=/tmp/old go test -run TestCLI
			return
		}
		goTool, err := exec.LookPath("go")
		if err != nil {
			binErr = err
			return
		}
		if binDir, binErr = os.MkdirTemp("", "tokenstore-bin-"); binErr != nil {
			return
		}
		if binErr = os.Chmod(binDir, 0o755); binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "tokenstore")
		out, err := exec.Command(goTool, "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			binErr = errors.New("go build: " + err.Error() + "\n" + string(out))
		}
	})
	require.NoError(t, binErr)
	return binPath
}

// cli runs the built binary in a directory of its own, as the current
// user or (asOther) as an unprivileged one.
type cli struct {
	t       *testing.T
	dir     string // the working directory: every user may enter it
	asOther bool
	env     []string // "NAME=value" added to the environment, which has no TOKENSTORE_ variable otherwise
}

func newCLI(t *testing.T) *cli {
	t.Helper()
	dir, err := os.MkdirTemp("", "tokenstore-cli-")
	require.NoError(t, err)
	t.Cleanup(func() {
		// Tests shut directories (0555) to other users; open them again so
		// that a run as a plain user can remove what they hold.
		_ = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				_ = os.Chmod(path, 0o755)
			}
			return nil
		})
		_ = os.RemoveAll(dir)
	})
	require.NoError(t, os.Chmod(dir, 0o755))
	return &cli{t: t, dir: dir}
}

// other returns a cli that runs the binary as a user who owns none of the
// files this test creates. Under root (which ignores permission bits) that
// is "nobody" through setpriv (util-linux, on every Debian machine);
// otherwise it is the current user, to whom the 0500 and 0600-of-root
// modes the tests set already apply.
func (c *cli) other() *cli {
	c.t.Helper()
	if os.Geteuid() == 0 {
		_, err := exec.LookPath("setpriv")
		require.NoError(c.t, err, "the permission tests run as root need setpriv (apt-get install util-linux)")
	}
	return &cli{t: c.t, dir: c.dir, asOther: true, env: c.env}
}

// run runs the binary with args in c.dir, stdin as its standard input.
func (c *cli) run(stdin string, args ...string) result {
	c.t.Helper()
	name, argv := binary(c.t), args
	if c.asOther && os.Geteuid() == 0 {
		name, argv = "setpriv", append([]string{"--reuid=65534", "--regid=65534", "--clear-groups", binary(c.t)}, args...)
	}
	cmd := exec.CommandContext(c.t.Context(), name, argv...)
	cmd.Dir = c.dir
	cmd.Env = c.env
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TOKENSTORE_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Stdin = strings.NewReader(stdin)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if exitErr, ok := errors.AsType[*exec.ExitError](err); ok {
		return result{exitErr.ExitCode(), o.String(), e.String()}
	}
	require.NoError(c.t, err)
	return result{0, o.String(), e.String()}
}

// path is name inside c.dir.
func (c *cli) path(name string) string { return filepath.Join(c.dir, name) }

// issue issues a token to subject in c.dir/tokens.db and returns it.
func (c *cli) issue(subject string, args ...string) string {
	c.t.Helper()
	got := c.run("", append([]string{"--db", "tokens.db", "issue", "--subject", subject}, args...)...)
	require.Equal(c.t, exitOK, got.code, got.stderr)
	require.Regexp(c.t, tokenLine, got.stdout)
	return strings.TrimSpace(got.stdout)
}
