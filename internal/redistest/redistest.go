// Package redistest starts a scratch redis-server for the tests of
// packages that run on the Redis backend.
package redistest

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
	"time"
)

// Server is a redis-server on a free loopback port, without persistence,
// in a temporary directory. It dies with the test binary.
type Server struct {
	Addr   string // "127.0.0.1:port"
	cmd    *exec.Cmd
	dir    string
	logged chan struct{} // closed when the server's output has been read to its end
	mu     sync.Mutex
	log    bytes.Buffer
}

// Start starts redis-server, trying three ports in case another process
// takes the one it picked, and returns once the server accepts
// connections. args are added to its command line (e.g. "--maxmemory",
// "2mb"). It returns exec.ErrNotFound (wrapped) when redis-server is not
// installed.
func Start(args ...string) (*Server, error) {
	return start("", args...)
}

// StartSentinel starts a Redis Sentinel with the given configuration
// ("sentinel monitor ..." lines), as Start starts a server. It runs as
// redis-server --sentinel: Debian's redis-server package has no
// redis-sentinel binary.
func StartSentinel(conf string) (*Server, error) {
	return start(conf)
}

func start(sentinelConf string, args ...string) (*Server, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, err
	}
	var errs []error
	for range 3 {
		srv, err := try(bin, sentinelConf, args...)
		if err == nil {
			return srv, nil
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}

func try(bin, sentinelConf string, args ...string) (*Server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "redistest-")
	if err != nil {
		return nil, err
	}
	s := &Server{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), dir: dir, logged: make(chan struct{})}
	s.cmd = exec.Command(bin)
	if sentinelConf != "" {
		// A Sentinel rewrites its configuration file: it must be its own.
		conf := filepath.Join(dir, "sentinel.conf")
		if err := os.WriteFile(conf, []byte(sentinelConf), 0o600); err != nil {
			_ = os.RemoveAll(dir)
			return nil, err
		}
		s.cmd.Args = append(s.cmd.Args, conf, "--sentinel")
	}
	s.cmd.Args = append(s.cmd.Args,
		"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", dir,
		"--daemonize", "no", "--loglevel", "notice", "--logfile", "")
	s.cmd.Args = append(s.cmd.Args, args...)
	s.cmd.SysProcAttr = sysProcAttr()
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
		s.Stop()
		return nil, fmt.Errorf("redis-server on port %d not ready after 10s:\n%s", port, s.output())
	}
}

// read keeps the server's output, signals ready at its first "Ready to
// accept connections" (a Sentinel's "Sentinel ID is"), and closes s.logged
// at the end of the output.
func (s *Server) read(out io.Reader, ready chan struct{}) {
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

func (s *Server) output() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log.String()
}

// Stop kills the server (SIGKILL: a crash, not a shutdown), waits for it
// and removes its directory. It may be called more than once.
func (s *Server) Stop() {
	_ = s.cmd.Process.Kill()
	<-s.logged
	_ = s.cmd.Wait()
	_ = os.RemoveAll(s.dir)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
