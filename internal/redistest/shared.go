package redistest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"testing"
)

// The shared server of a test binary: started by [Shared]'s Run, used by
// [Addr].
var (
	sharedAddr string
	sharedSkip = "redis-server was not started (wrap the tests' M with redistest.Shared in TestMain)"
)

// Shared wraps m so that its Run starts one redis-server for the whole
// test binary, runs the tests, and stops it, so that goleak's check
// (goleak.VerifyTestMain(redistest.Shared(m))) comes after the server's
// output reader has ended. REDISSTORE_TEST_ADDR names a server of the
// caller's instead (e.g. one with appendonly yes).
func Shared(m *testing.M) interface{ Run() int } { return shared{m} }

type shared struct{ m *testing.M }

func (s shared) Run() int {
	if addr := os.Getenv("REDISSTORE_TEST_ADDR"); addr != "" {
		sharedAddr = addr
		return s.m.Run()
	}
	srv, err := Start()
	switch {
	case errors.Is(err, exec.ErrNotFound):
		sharedSkip = "redis-server is not installed (Debian: apt-get install redis-server)"
		return s.m.Run()
	case err != nil:
		fmt.Fprintln(os.Stderr, "redistest:", err)
		return 1
	}
	defer srv.Stop()
	sharedAddr = srv.Addr
	return s.m.Run()
}

// Addr returns the shared server's address. Without one it skips t, and
// under CI (.ci/run sets CI=true and installs redis-server) fails it, so
// that CI never passes by skipping.
func Addr(t testing.TB) string {
	t.Helper()
	if sharedAddr == "" {
		SkipOutsideCI(t, sharedSkip)
	}
	return sharedAddr
}

// SkipOutsideCI skips t for want of a server or a browser, except under
// CI, where it fails t.
func SkipOutsideCI(t testing.TB, why string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatal(why)
	}
	t.Skip(why)
}
