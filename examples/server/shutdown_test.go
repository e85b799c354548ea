package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestServer_ShutdownFinishesRequestsInFlight: a login whose request is
// in flight when SIGTERM arrives (its body not fully sent yet) is served
// in full after the server has stopped accepting connections, and the
// token it issued is on file after the restart: Shutdown waits for it,
// and Close runs after it.
func TestServer_ShutdownFinishesRequestsInFlight(t *testing.T) {
	goBin, err := exec.LookPath("go")
	require.NoError(t, err, "the test builds the example with the go command")
	dir := t.TempDir()
	bin := filepath.Join(dir, "server")
	out, err := exec.Command(goBin, "build", "-o", bin, ".").CombinedOutput()
	require.NoError(t, err, "go build: %s", out)
	b, err := json.Marshal([]user{{Username: "alice", Password: hashWith(t, bin, "pw"), Scope: "read"}})
	require.NoError(t, err)
	usersFile := filepath.Join(dir, "users.json")
	require.NoError(t, os.WriteFile(usersFile, b, 0o600))
	dbFile := filepath.Join(dir, "tokens.db")

	p := start(t, bin, "-addr", "127.0.0.1:0", "-db", dbFile, "-users", usersFile)
	addr := strings.TrimPrefix(p.url, "http://")

	// A login in flight: its handler runs and waits for the body. With
	// Expect: 100-continue the server says "100 Continue" when the handler
	// first reads the body, so the test knows it is in flight before the
	// signal.
	body := `{"username":"alice","password":"pw"}`
	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer conn.Close()
	_, err = fmt.Fprintf(conn, "POST /login HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
		addr, len(body))
	require.NoError(t, err)
	rd := bufio.NewReader(conn)
	cont, err := http.ReadResponse(rd, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusContinue, cont.StatusCode)

	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	require.Eventually(t, func() bool { return strings.Contains(p.logs(), "shutting down") }, 30*time.Second, 10*time.Millisecond)
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Fatal("the server still accepts connections while shutting down")
	}

	_, err = conn.Write([]byte(body))
	require.NoError(t, err)
	res, err := http.ReadResponse(rd, nil)
	require.NoError(t, err, "the request in flight is answered")
	defer res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode)
	var tok struct {
		Token string `json:"token"`
	}
	require.NoError(t, json.NewDecoder(res.Body).Decode(&tok))
	require.NotEmpty(t, tok.Token)

	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("the server did not exit within 30s of SIGTERM:\n%s", p.logs())
	}
	require.NoError(t, p.cmd.Wait(), p.logs())
	assert.Contains(t, p.logs(), "token store closed")
	assert.NotContains(t, p.logs(), tok.Token, "a token in the log")

	p = start(t, bin, "-addr", "127.0.0.1:0", "-db", dbFile, "-users", usersFile)
	assert.Equal(t, http.StatusOK, p.call("GET", "/api/me", tok.Token, "").status, "the token issued during shutdown is on file")
	p.stop(syscall.SIGTERM)
}
