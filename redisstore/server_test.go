package redisstore_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// The package's tests and benchmarks share one redis-server, started by
// TestMain on a free loopback port without persistence, and killed when
// they end; each test keeps to its own KeyPrefix. REDISSTORE_TEST_ADDR
// names a running scratch server to use instead.
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
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		redisSkip = "redis-server is not installed (Debian: apt-get install redis-server); skipping the Redis tests"
		return w.m.Run()
	}
	srv, err := startRedis(bin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "redisstore tests:", err)
		return 1
	}
	defer srv.stop()
	redisAddr = srv.addr
	return w.m.Run()
}

// needRedis skips t when there is no redis-server and returns its address.
func needRedis(t testing.TB) string {
	t.Helper()
	if redisAddr == "" {
		t.Skip(redisSkip)
	}
	return redisAddr
}

type redisServer struct {
	addr   string
	cmd    *exec.Cmd
	dir    string
	logged chan struct{} // closed when the server's output has been read to its end
	mu     sync.Mutex
	log    bytes.Buffer
}

// startRedis starts redis-server on a free port, trying three ports in
// case another process takes the one it picked, and returns once the
// server says it accepts connections.
func startRedis(bin string, args ...string) (*redisServer, error) {
	return startServer(bin, "", args...)
}

// startServer starts redis-server, as startRedis does, or, with a
// sentinel configuration, as a Sentinel (redis-server --sentinel: Debian's
// redis-server package has no separate redis-sentinel binary).
func startServer(bin, sentinelConf string, args ...string) (*redisServer, error) {
	var errs []error
	for range 3 {
		srv, err := tryRedis(bin, sentinelConf, args...)
		if err == nil {
			return srv, nil
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}

func tryRedis(bin, sentinelConf string, args ...string) (*redisServer, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "redisstore-test-")
	if err != nil {
		return nil, err
	}
	s := &redisServer{addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), dir: dir, logged: make(chan struct{})}
	s.cmd = exec.Command(bin)
	if sentinelConf != "" {
		// A Sentinel rewrites its configuration file: it must be its own.
		conf := filepath.Join(dir, "sentinel.conf")
		if err := os.WriteFile(conf, []byte(sentinelConf), 0o600); err != nil {
			return nil, err
		}
		s.cmd.Args = append(s.cmd.Args, conf, "--sentinel")
	}
	s.cmd.Args = append(s.cmd.Args,
		"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", dir,
		"--daemonize", "no", "--loglevel", "notice", "--logfile", "")
	s.cmd.Args = append(s.cmd.Args, args...)
	s.cmd.SysProcAttr = sysProcAttr() // dies with the test binary
	out, err := s.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	s.cmd.Stderr = s.cmd.Stdout
	if err := s.cmd.Start(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	ready := make(chan struct{})
	go s.read(out, ready)
	select {
	case <-ready:
		return s, nil
	case <-s.logged: // exited before it was ready
		_ = s.cmd.Wait()
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("redis-server on port %d exited:\n%s", port, s.output())
	case <-time.After(10 * time.Second):
		s.stop()
		return nil, fmt.Errorf("redis-server on port %d not ready after 10s:\n%s", port, s.output())
	}
}

// read keeps the server's output, signals ready at its first "Ready to
// accept connections" (a Sentinel's "Sentinel ID is"), and closes s.logged
// at the end of the output.
func (s *redisServer) read(out io.Reader, ready chan struct{}) {
	defer close(s.logged)
	sc := bufio.NewScanner(out)
	signalled := false
	for sc.Scan() {
		s.mu.Lock()
		s.log.WriteString(sc.Text() + "\n")
		s.mu.Unlock()
		if !signalled && (strings.Contains(sc.Text(), "Ready to accept connections") || strings.Contains(sc.Text(), "Sentinel ID is")) {
			signalled = true
			close(ready)
		}
	}
	_, _ = io.Copy(io.Discard, out)
}

func (s *redisServer) output() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log.String()
}

func (s *redisServer) stop() {
	_ = s.cmd.Process.Kill()
	<-s.logged
	_ = s.cmd.Wait()
	_ = os.RemoveAll(s.dir)
}

// ownSentinel starts a Sentinel for t alone, with the given configuration
// (sentinel monitor ... lines), killed when t ends.
func ownSentinel(t testing.TB, conf string) *redisServer {
	t.Helper()
	needRedis(t)
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip(redisSkip)
	}
	srv, err := startServer(bin, conf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.stop)
	return srv
}

// ownRedis starts a redis-server for t alone, with extra arguments (e.g.
// "--maxmemory", "2mb"), for tests that pause, fill or reconfigure it; it
// is killed when t ends. It skips t when redis-server is not installed.
func ownRedis(t testing.TB, args ...string) *redisServer {
	t.Helper()
	needRedis(t)
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip(redisSkip)
	}
	srv, err := startRedis(bin, args...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.stop)
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
