package redisstore_test

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"testing"

	"go.uber.org/goleak"

	"github.com/tokenstore/tokenstore/internal/redistest"
)

// The package's tests and benchmarks share one redis-server, started by
// TestMain on a free loopback port without persistence, and killed when
// they end; each test keeps to its own KeyPrefix. Tests that pause, fill,
// replicate or cluster a Redis start their own (ownRedis, ownSentinel).
// REDISSTORE_TEST_ADDR names a running scratch server to use instead of
// the shared one.
var (
	redisAddr string // "127.0.0.1:port", or "" when redis-server is absent
	redisSkip string // why tests skip
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(withRedis{m})
}

// withRedis runs the tests between starting and stopping the server, so
// that goleak's check comes after the server's reader has ended.
type withRedis struct{ m *testing.M }

func (w withRedis) Run() int {
	if addr := os.Getenv("REDISSTORE_TEST_ADDR"); addr != "" {
		// A scratch server of the caller's, e.g. one with appendonly yes to
		// benchmark its fsyncs. Tests write under test<N>: prefixes.
		redisAddr = addr
		return w.m.Run()
	}
	srv, err := redistest.Start()
	switch {
	case errors.Is(err, exec.ErrNotFound):
		redisSkip = "redis-server is not installed (Debian: apt-get install redis-server)"
		return w.m.Run()
	case err != nil:
		fmt.Fprintln(os.Stderr, "redisstore tests:", err)
		return 1
	}
	defer srv.Stop()
	redisAddr = srv.Addr
	return w.m.Run()
}

// needRedis returns the shared server's address, or skips t when there is
// none; under CI (.ci/run sets CI=true and installs redis-server) it
// fails t instead.
func needRedis(t testing.TB) string {
	t.Helper()
	if redisAddr == "" {
		if os.Getenv("CI") != "" {
			t.Fatal(redisSkip)
		}
		t.Skip(redisSkip)
	}
	return redisAddr
}

// ownRedis starts a redis-server for t alone, with extra arguments (e.g.
// "--maxmemory", "2mb"), for tests that pause, fill or reconfigure it; it
// is killed when t ends.
func ownRedis(t testing.TB, args ...string) *redistest.Server {
	t.Helper()
	needRedis(t)
	srv, err := redistest.Start(args...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	return srv
}

// ownSentinel starts a Sentinel for t alone, with the given configuration
// (sentinel monitor ... lines), killed when t ends.
func ownSentinel(t testing.TB, conf string) *redistest.Server {
	t.Helper()
	needRedis(t)
	srv, err := redistest.StartSentinel(conf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	return srv
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
