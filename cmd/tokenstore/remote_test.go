package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tokenstore/tokenstore"
	"github.com/tokenstore/tokenstore/admin"
	"github.com/tokenstore/tokenstore/internal/redistest"
	"github.com/tokenstore/tokenstore/redisstore"
)

// The tests of --url mode: the built binary against the admin handler of
// an application served by a real net/http server on loopback, on a bbolt
// file and on a redis-server the test starts.

// running is an application: the admin handler mounted at /admin/ of a
// loopback server, on store.
type running struct {
	t     *testing.T
	store tokenstore.Store
	srv   *httptest.Server
	url   string // where the admin handler is mounted
	admin string // a token of store with the admin scope
	cred  string // the file holding admin, 0600
}

// serve mounts the admin handler on store and serves it on loopback. The
// admin credential is written to c's directory.
func serve(t *testing.T, c *cli, store tokenstore.Store) *running {
	t.Helper()
	h, err := admin.New(store, &admin.Options{Prefix: "/admin", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, err)
	mux := http.NewServeMux()
	mux.Handle("/admin/", h)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	r := &running{t: t, store: store, srv: srv, url: srv.URL + "/admin", cred: c.path("admin-token")}
	r.admin, _ = r.issue("ops-alice", tokenstore.WithMetadata(map[string]string{"scope": admin.DefaultScope}))
	require.NoError(t, os.WriteFile(r.cred, []byte(r.admin+"\n"), 0o600))
	return r
}

func (r *running) issue(subject string, opts ...tokenstore.IssueOption) (string, tokenstore.Info) {
	r.t.Helper()
	tok, info, err := r.store.Issue(context.Background(), subject, opts...)
	require.NoError(r.t, err)
	return tok, info
}

// args is --url and --credential-file, then args.
func (r *running) args(args ...string) []string {
	return append([]string{"--url", r.url, "--credential-file", r.cred}, args...)
}

// openFile opens a token file for a server, closed at cleanup unless
// closed before.
func openFile(t *testing.T, path string) *tokenstore.DB {
	t.Helper()
	db, err := tokenstore.Open(path, &tokenstore.Options{SweepInterval: -1})
	require.NoError(t, err)
	t.Cleanup(func() {
		if err := db.Close(); err != nil && !errors.Is(err, tokenstore.ErrClosed) {
			t.Error(err)
		}
	})
	return db
}

var redisPrefixes atomic.Int64

// openRedis starts a redis-server for t and returns a store on it.
func openRedis(t *testing.T) tokenstore.Store {
	t.Helper()
	srv, err := redistest.Start()
	if err != nil {
		if os.Getenv("CI") == "" && errors.Is(err, os.ErrNotExist) || strings.Contains(fmt.Sprint(err), "executable file not found") && os.Getenv("CI") == "" {
			t.Skip("redis-server is not installed (Debian: apt-get install redis-server)")
		}
		require.NoError(t, err)
	}
	t.Cleanup(srv.Stop)
	c := redis.NewClient(&redis.Options{
		Addr:                     srv.Addr,
		DisableIdentity:          true,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	})
	s, err := redisstore.New(c, &redisstore.Options{KeyPrefix: fmt.Sprintf("clitest%d:", redisPrefixes.Add(1)), SweepInterval: -1})
	require.NoError(t, err)
	t.Cleanup(func() {
		require.NoError(t, s.Close())
		require.NoError(t, c.Close())
	})
	return s
}

// TestRemote_Commands runs every command --url offers with the built
// binary, on both backends, and checks each against the store behind the
// application.
func TestRemote_Commands(t *testing.T) {
	for _, backend := range []string{"file", "redis"} {
		t.Run(backend, func(t *testing.T) {
			c := newCLI(t)
			var st tokenstore.Store
			if backend == "file" {
				st = openFile(t, c.path("tokens.db"))
			} else {
				st = openRedis(t)
			}
			app := serve(t, c, st)
			ctx := context.Background()

			// issue: the token on stdout only, its details on stderr.
			got := c.run("", app.args("issue", "--subject", "alice", "--ttl", "30d", "--meta", "device=laptop")...)
			require.Equal(t, exitOK, got.code, got.stderr)
			require.Regexp(t, tokenLine, got.stdout)
			laptop := strings.TrimSpace(got.stdout)
			assert.Regexp(t, `^issued token [0-9a-f-]{36} to "alice", absolute\(30d\), expires \S+ \(in (30d|29d23h59m)\)\n$`, got.stderr)
			info, err := st.Validate(ctx, laptop)
			require.NoError(t, err, "the application issued it")
			assert.Equal(t, map[string]string{"device": "laptop"}, info.Metadata)

			got = c.run("", app.args("issue", "--subject", "alice", "--ttl", "1h", "--json")...)
			require.Equal(t, exitOK, got.code, got.stderr)
			var issued issuedJSON
			require.NoError(t, json.Unmarshal([]byte(got.stdout), &issued))
			assert.Equal(t, "alice", issued.Subject)
			assert.Equal(t, "absolute(1h)", issued.Policy)
			assert.Nil(t, issued.LastUsedAt)
			soon := issued.Token
			_, err = st.Lookup(ctx, soon)
			require.NoError(t, err)

			got = c.run("", app.args("issue", "--subject", "bob", "--idle", "1d", "--max", "90d")...)
			require.Equal(t, exitOK, got.code, got.stderr)
			bob := strings.TrimSpace(got.stdout)
			assert.Contains(t, got.stderr, `to "bob", sliding(idle=1d, max=90d)`)
			assertNoToken(t, got.stderr, bob, app.admin)

			// list --subject: the subject's live tokens, oldest first.
			got = c.run("", app.args("list", "--subject", "alice")...)
			require.Equal(t, exitOK, got.code, got.stderr)
			assert.Regexp(t, `^ID +SUBJECT +CREATED +LAST USED +EXPIRES +POLICY +METADATA\n`, got.stdout)
			assert.Regexp(t, `(?m)^`+info.ID.String()+` +alice +\S+ +\S+ +\S+ +absolute\(30d\) +device=laptop$`, got.stdout, "used once, by the Validate above")
			assert.Regexp(t, `(?m)^`+issued.ID+` +alice +\S+ +never +\S+ +absolute\(1h\) *$`, got.stdout)
			got = c.run("", app.args("list", "--subject", "alice", "--json")...)
			require.Equal(t, exitOK, got.code, got.stderr)
			rows := decodeLines[infoJSON](t, got.stdout)
			require.Len(t, rows, 2)
			assert.Equal(t, []string{info.ID.String(), issued.ID}, []string{rows[0].ID, rows[1].ID})
			require.NotNil(t, rows[0].LastUsedAt)
			assert.True(t, rows[0].LastUsedAt.Equal(info.LastUsedAt))
			got = c.run("", app.args("list", "--subject", "nobody")...)
			assert.Equal(t, exitOK, got.code, got.stderr)
			assert.Empty(t, got.stdout)
			assert.Equal(t, "no live tokens for subject \"nobody\"\n", got.stderr)

			// inspect, by token (stdin) and by ID.
			got = c.run(laptop+"\n", app.args("inspect", "--json")...)
			require.Equal(t, exitOK, got.code, got.stderr)
			var byToken infoJSON
			require.NoError(t, json.Unmarshal([]byte(got.stdout), &byToken))
			assert.Equal(t, info.ID.String(), byToken.ID)
			assert.Equal(t, "absolute(30d)", byToken.Policy)
			assertNoToken(t, got.stdout+got.stderr, laptop, app.admin)
			got = c.run("", app.args("inspect", "--id", issued.ID)...)
			require.Equal(t, exitOK, got.code, got.stderr)
			assert.Regexp(t, `(?m)^id +`+issued.ID+`\nsubject +alice\ncreated .*\nlast used +never\nexpires +\S+ \(in (1h|59m\d+s)\)\npolicy +absolute\(1h\)\n$`, got.stdout)
			after, err := st.Lookup(ctx, soon)
			require.NoError(t, err)
			assert.Equal(t, after.CreatedAt, after.LastUsedAt, "inspect counted no use")

			// expiring: the 1h token, not the 30d ones.
			got = c.run("", app.args("expiring", "--within", "2h")...)
			require.Equal(t, exitOK, got.code, got.stderr)
			assert.Regexp(t, `^ID .*\n`+issued.ID+` +alice .*absolute\(1h\) *\n$`, got.stdout)
			got = c.run("", app.args("expiring", "--within", "60d", "--json")...)
			require.Equal(t, exitOK, got.code, got.stderr)
			var soonest []string
			for _, r := range decodeLines[infoJSON](t, got.stdout) {
				soonest = append(soonest, r.Subject+" "+r.Policy)
			}
			// Soonest first; the admin token, used by every request, has the
			// default sliding(idle=14d) deadline.
			assert.Equal(t, []string{"alice absolute(1h)", "bob sliding(idle=1d, max=90d)", "ops-alice sliding(idle=14d, max=30d)", "alice absolute(30d)"}, soonest)
			got = c.run("", app.args("expiring", "--within", "10m")...)
			assert.Equal(t, exitOK, got.code, got.stderr)
			assert.Empty(t, got.stdout)
			assert.Equal(t, "no live tokens expire within 10m\n", got.stderr)

			// stats: the same figures, and the application's counters.
			got = c.run("", app.args("stats", "--json")...)
			require.Equal(t, exitOK, got.code, got.stderr)
			var s statsJSON
			require.NoError(t, json.Unmarshal([]byte(got.stdout), &s))
			assert.Equal(t, app.url, s.URL)
			assert.Equal(t, 4, s.Tokens.Total)
			require.NotNil(t, s.Tokens.Live)
			assert.Equal(t, 4, *s.Tokens.Live)
			assert.Equal(t, map[string]int{"absolute(30d)": 1, "absolute(1h)": 1, "sliding(idle=1d, max=90d)": 1, "sliding(idle=14d, max=30d)": 1}, s.Tokens.Policies)
			require.NotNil(t, s.Counters)
			assert.Equal(t, uint64(4), s.Counters.Issued)
			if backend == "file" {
				require.NotNil(t, s.Bolt)
				assert.Equal(t, c.path("tokens.db"), s.File)
				assert.Len(t, s.Bolt.Buckets, 5)
			} else {
				assert.Nil(t, s.Bolt, "Redis has no file")
				assert.Empty(t, s.File)
			}
			got = c.run("", app.args("stats")...)
			require.Equal(t, exitOK, got.code, got.stderr)
			assert.Regexp(t, `(?m)^url +`+app.url+`\n`, got.stdout)
			assert.Regexp(t, `(?m)^tokens +4\n  live +4\n  expired +0\n`, got.stdout)
			assert.Regexp(t, `(?m)^  issued +4$`, got.stdout)
			assert.Equal(t, backend == "file", strings.Contains(got.stdout, "bbolt pages"))

			// revoke by token, by ID, and a subject's.
			got = c.run(bob+"\n", app.args("revoke")...)
			require.Equal(t, exitOK, got.code, got.stderr)
			assert.Equal(t, "revoked 1 token\n", got.stdout)
			_, err = st.Lookup(ctx, bob)
			assert.ErrorIs(t, err, tokenstore.ErrNotFound, "the application revoked it")
			got = c.run(bob+"\n", app.args("revoke")...)
			assert.Equal(t, exitFailed, got.code)
			assert.Equal(t, "tokenstore: invalid token: not found (never issued, already revoked, or expired and swept; --missing-ok accepts that)\n", got.stderr)
			got = c.run(bob+"\n", app.args("revoke", "--missing-ok")...)
			assert.Equal(t, exitOK, got.code, got.stderr)
			assert.Equal(t, "revoked 0 tokens\n", got.stdout)

			got = c.run("", app.args("revoke", "--id", issued.ID, "--json")...)
			require.Equal(t, exitOK, got.code, got.stderr)
			assert.JSONEq(t, `{"revoked": 1}`, got.stdout)
			_, err = st.Get(ctx, uuid.MustParse(issued.ID))
			assert.ErrorIs(t, err, tokenstore.ErrNotFound)
			got = c.run("", app.args("revoke", "--id", issued.ID)...)
			assert.Equal(t, exitFailed, got.code)
			assert.Equal(t, "tokenstore: no token with ID "+issued.ID+" (never issued, already revoked, or expired and swept; --missing-ok accepts that)\n", got.stderr)
			got = c.run("", app.args("revoke", "--id", issued.ID, "--missing-ok", "--json")...)
			assert.Equal(t, exitOK, got.code, got.stderr)
			assert.JSONEq(t, `{"revoked": 0}`, got.stdout)
			got = c.run("", app.args("inspect", "--id", issued.ID, "--json")...)
			assert.Equal(t, exitFailed, got.code)
			assert.Equal(t, "not_found", decodeError(t, got.stdout).Code)

			_, _ = app.issue("alice")
			got = c.run("", app.args("revoke", "--subject", "alice")...)
			require.Equal(t, exitOK, got.code, got.stderr)
			assert.Equal(t, "revoked 2 tokens\n", got.stdout)
			left, err := st.List(ctx, "alice")
			require.NoError(t, err)
			assert.Empty(t, left)
			got = c.run("", app.args("revoke", "--subject", "alice", "--json")...)
			assert.Equal(t, exitOK, got.code, got.stderr)
			assert.JSONEq(t, `{"revoked": 0}`, got.stdout)
		})
	}
}
