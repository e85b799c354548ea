package redisstore_test

import (
	"net"
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
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(redistest.Shared(m))
}

// needRedis returns the shared server's address, or skips t when there is
// none (fails it under CI).
func needRedis(t testing.TB) string {
	t.Helper()
	return redistest.Addr(t)
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
