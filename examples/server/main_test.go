package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestServer builds the example, runs it as a child process on a loopback
// port, uses it, revokes a leaked token through the admin API, stops it
// with SIGTERM, starts it again on the same file, and checks that nothing
// was lost: the last use of a token used just before the stop (kept in
// memory until Close) was written, the revoked token stays revoked, the
// other works.
func TestServer(t *testing.T) {
	goBin, err := exec.LookPath("go")
	require.NoError(t, err, "the test builds the example with the go command")
	dir := t.TempDir()
	bin := filepath.Join(dir, "server")
	build := exec.Command(goBin, "build", "-o", bin, ".")
	out, err := build.CombinedOutput()
	require.NoError(t, err, "go build: %s", out)

	users := []user{
		{Username: "alice", Password: hashWith(t, bin, "alice's password"), Scope: "read"},
		{Username: "ops", Password: hashWith(t, bin, "ops's password"), Scope: "read tokenstore:admin"},
	}
	b, err := json.Marshal(users)
	require.NoError(t, err)
	usersFile := filepath.Join(dir, "users.json")
	require.NoError(t, os.WriteFile(usersFile, b, 0o600))
	dbFile := filepath.Join(dir, "tokens.db")

	// First run.
	p := start(t, bin, "-addr", "127.0.0.1:0", "-db", dbFile, "-users", usersFile)
	res := p.call("POST", "/login", "", `{"username":"alice","password":"wrong"}`)
	assert.Equal(t, http.StatusUnauthorized, res.status)
	res = p.call("POST", "/login", "", `{"username":"mallory","password":"x"}`)
	assert.Equal(t, http.StatusUnauthorized, res.status)
	used := p.login("alice", "alice's password")
	leaked := p.login("alice", "alice's password")
	ops := p.login("ops", "ops's password")

	res = p.call("GET", "/api/me", used, "")
	require.Equal(t, http.StatusOK, res.status, res.body)
	var me struct {
		Subject string `json:"subject"`
		TokenID string `json:"token_id"`
	}
	require.NoError(t, json.Unmarshal([]byte(res.body), &me))
	assert.Equal(t, "alice", me.Subject)
	usedID := me.TokenID
	assert.Equal(t, http.StatusOK, p.call("GET", "/api/me", leaked, "").status)
	assert.Equal(t, http.StatusUnauthorized, p.call("GET", "/api/me", "", "").status)

	// The leaked token: found and revoked through the admin API.
	res = p.call("GET", "/admin/api/stats", used, "")
	assert.Equal(t, http.StatusForbidden, res.status, "alice is no admin")
	res = p.call("POST", "/admin/api/tokens/inspect", ops, `{"token":"`+leaked+`"}`)
	require.Equal(t, http.StatusOK, res.status, res.body)
	var leakedInfo struct {
		ID string `json:"id"`
	}
	require.NoError(t, json.Unmarshal([]byte(res.body), &leakedInfo))
	res = p.call("DELETE", "/admin/api/tokens/"+leakedInfo.ID, ops, "")
	require.Equal(t, http.StatusOK, res.status, res.body)
	assert.Equal(t, http.StatusUnauthorized, p.call("GET", "/api/me", leaked, "").status, "refused at once")

	res = p.call("GET", "/admin/api/tokens/"+usedID, ops, "")
	require.Equal(t, http.StatusOK, res.status, res.body)
	before := tokenInfo(t, res.body)
	require.True(t, before.LastUsedAt.After(before.CreatedAt), "the use is seen while running: %s", res.body)

	p.stop(syscall.SIGTERM)
	logs := p.logs()
	assert.Contains(t, logs, "shutting down")
	assert.Contains(t, logs, "token store closed")
	for _, tok := range []string{used, leaked, ops} {
		assert.NotContains(t, logs, tok, "a token in the log")
	}

	// Second run, same file.
	p = start(t, bin, "-addr", "127.0.0.1:0", "-db", dbFile, "-users", usersFile)
	res = p.call("GET", "/admin/api/tokens/"+usedID, ops, "")
	require.Equal(t, http.StatusOK, res.status, res.body)
	after := tokenInfo(t, res.body)
	assert.Equal(t, before.LastUsedAt, after.LastUsedAt, "the last use was written at shutdown")
	assert.Equal(t, before.ExpiresAt, after.ExpiresAt, "and so the slid deadline")
	assert.Equal(t, http.StatusUnauthorized, p.call("GET", "/api/me", leaked, "").status, "still revoked")
	assert.Equal(t, http.StatusOK, p.call("GET", "/api/me", used, "").status)
	assert.Equal(t, http.StatusNoContent, p.call("POST", "/logout", used, "").status)
	assert.Equal(t, http.StatusUnauthorized, p.call("GET", "/api/me", used, "").status, "logged out")
	p.stop(syscall.SIGINT)
}

type tokenJSON struct {
	CreatedAt  time.Time `json:"created_at"`
	LastUsedAt time.Time `json:"last_used_at"`
	ExpiresAt  time.Time `json:"expires_at"`
}

func tokenInfo(t *testing.T, body string) tokenJSON {
	t.Helper()
	var ti tokenJSON
	require.NoError(t, json.Unmarshal([]byte(body), &ti))
	return ti
}

// hashWith runs "server hash-password" with password on stdin.
func hashWith(t *testing.T, bin, password string) string {
	t.Helper()
	cmd := exec.Command(bin, "hash-password")
	cmd.Stdin = strings.NewReader(password + "\n")
	out, err := cmd.Output()
	require.NoError(t, err)
	return strings.TrimSpace(string(out))
}

// proc is a running server.
type proc struct {
	t      *testing.T
	cmd    *exec.Cmd
	url    string
	done   chan struct{} // closed when its stderr has been read to the end
	mu     sync.Mutex
	stderr bytes.Buffer
}

var listening = regexp.MustCompile(`msg=listening url=(http://\S+)`)

// start runs bin and waits for its "listening" line.
func start(t *testing.T, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, cmd: exec.Command(bin, args...), done: make(chan struct{})}
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	errPipe, err := p.cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, p.cmd.Start())
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil { // a failed test: do not leave it running
			_ = p.cmd.Process.Kill()
			<-p.done
			_ = p.cmd.Wait()
		}
	})
	ready := make(chan string, 1)
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(errPipe)
		for sc.Scan() {
			p.mu.Lock()
			p.stderr.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
			if m := listening.FindStringSubmatch(sc.Text()); m != nil {
				ready <- m[1]
			}
		}
		_, _ = io.Copy(io.Discard, errPipe)
	}()
	select {
	case p.url = <-ready:
	case <-p.done:
		_ = p.cmd.Wait()
		t.Fatalf("the server exited before listening:\n%s", p.logs())
	case <-time.After(30 * time.Second):
		t.Fatalf("the server did not listen within 30s:\n%s", p.logs())
	}
	return p
}

func (p *proc) logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.String()
}

// stop sends sig and waits for a clean exit.
func (p *proc) stop(sig syscall.Signal) {
	p.t.Helper()
	require.NoError(p.t, p.cmd.Process.Signal(sig))
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		p.t.Fatalf("the server did not exit within 30s of %v:\n%s", sig, p.logs())
	}
	err := p.cmd.Wait()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		p.t.Fatalf("the server exited with %v after %v:\n%s", err, sig, p.logs())
	}
	require.NoError(p.t, err)
}

type response struct {
	status int
	body   string
}

func (p *proc) call(method, path, token, body string) response {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	r, err := http.NewRequestWithContext(ctx, method, p.url+path, rd)
	require.NoError(p.t, err)
	if body != "" {
		r.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := noKeepAlive.Do(r)
	require.NoError(p.t, err)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	require.NoError(p.t, err)
	return response{res.StatusCode, string(b)}
}

func (p *proc) login(username, password string) string {
	p.t.Helper()
	b, err := json.Marshal(map[string]string{"username": username, "password": password})
	require.NoError(p.t, err)
	res := p.call("POST", "/login", "", string(b))
	require.Equal(p.t, http.StatusOK, res.status, res.body)
	var tok struct {
		Token string `json:"token"`
	}
	require.NoError(p.t, json.Unmarshal([]byte(res.body), &tok))
	require.NotEmpty(p.t, tok.Token)
	return tok.Token
}

// noKeepAlive leaves no idle connection (nor its goroutines) behind.
var noKeepAlive = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
