package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

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
	mux.HandleFunc("/home/", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		_, _ = io.WriteString(w, "<!doctype html><title>Home</title>")
	})
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
func openFile(t *testing.T, path string, opts ...func(*tokenstore.Options)) *tokenstore.DB {
	t.Helper()
	o := &tokenstore.Options{SweepInterval: -1}
	for _, f := range opts {
		f(o)
	}
	db, err := tokenstore.Open(path, o)
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
		if errors.Is(err, exec.ErrNotFound) && os.Getenv("CI") == "" { // .ci/run installs it
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
	s, err := redisstore.New(c, &redisstore.Options{
		KeyPrefix: fmt.Sprintf("clitest%d:", redisPrefixes.Add(1)), SweepInterval: -1,
		TouchInterval: -1, // every use written, so that list shows it, as the file store shows uses from memory
	})
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
			assert.Regexp(t, `^ID +FAMILY +SUBJECT +CREATED +LAST USED +EXPIRES +POLICY +METADATA\n`, got.stdout)
			assert.Regexp(t, `(?m)^`+info.ID.String()+` +`+info.FamilyID.String()+` +alice +\S+ +\S+ +\S+ +absolute\(30d\) +device=laptop$`, got.stdout, "used once, by the Validate above")
			assert.Regexp(t, `(?m)^`+issued.ID+` +`+issued.ID+` +alice +\S+ +never +\S+ +absolute\(1h\) *$`, got.stdout)
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
			assert.Regexp(t, `(?m)^id +`+issued.ID+`\nfamily +`+issued.ID+` \(its first token\)\nsubject +alice\ncreated .*\nlast used +never\nexpires +\S+ \(in (1h|59m\d+s)\)\npolicy +absolute\(1h\)\n$`, got.stdout)
			after, err := st.Lookup(ctx, soon)
			require.NoError(t, err)
			assert.Equal(t, after.CreatedAt, after.LastUsedAt, "inspect counted no use")

			// expiring: the 1h token, not the 30d ones.
			got = c.run("", app.args("expiring", "--within", "2h")...)
			require.Equal(t, exitOK, got.code, got.stderr)
			assert.Regexp(t, `^ID .*\n`+issued.ID+` +`+issued.ID+` +alice .*absolute\(1h\) *\n$`, got.stdout)
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
				assert.Len(t, s.Bolt.Buckets, 8) // the five of tokens, and the three of families
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

			// A subject with a slash travels path-escaped.
			_, teamInfo := app.issue("team/ops")
			got = c.run("", app.args("list", "--subject", "team/ops", "--json")...)
			require.Equal(t, exitOK, got.code, got.stderr)
			assert.Equal(t, teamInfo.ID.String(), decodeLines[infoJSON](t, got.stdout)[0].ID)
			got = c.run("", app.args("revoke", "--subject", "team/ops")...)
			require.Equal(t, exitOK, got.code, got.stderr)
			assert.Equal(t, "revoked 1 token\n", got.stdout)

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

// TestRemote_SameOutputAsFile: the read commands print, byte for byte,
// what they print on the file once the application has stopped.
func TestRemote_SameOutputAsFile(t *testing.T) {
	c := newCLI(t)
	db := openFile(t, c.path("tokens.db"))
	app := serve(t, c, db)
	laptop, info := app.issue("alice", tokenstore.WithPolicy(tokenstore.Absolute(30*24*time.Hour)), tokenstore.WithMetadata(map[string]string{"device": "laptop", "note": "a b"}))
	_, err := db.Validate(context.Background(), laptop)
	require.NoError(t, err)
	_, soon := app.issue("alice", tokenstore.WithPolicy(tokenstore.Absolute(time.Hour)))
	app.issue("bob", tokenstore.WithPolicy(tokenstore.Sliding(24*time.Hour, 0)))

	commands := []struct {
		stdin string
		args  []string
	}{
		{"", []string{"list", "--subject", "alice"}},
		{"", []string{"list", "--subject", "alice", "--json"}},
		{"", []string{"list", "--subject", "nobody"}},
		{laptop + "\n", []string{"inspect", "--json"}},
		{"", []string{"inspect", "--id", info.ID.String(), "--json"}},
		{"", []string{"inspect", "--id", soon.ID.String(), "--json"}},
		{"", []string{"inspect", "--id", uuid.NewString(), "--json"}},
		{"tks_nope\n", []string{"inspect"}},
		{"", []string{"expiring", "--within", "2d"}},
		{"", []string{"expiring", "--within", "2d", "--json"}},
	}
	remote := make([]result, len(commands))
	for i, cmd := range commands {
		remote[i] = c.run(cmd.stdin, app.args(cmd.args...)...)
	}
	got := c.run("", app.args("stats", "--json")...)
	require.Equal(t, exitOK, got.code, got.stderr)
	var remoteStats statsJSON
	require.NoError(t, json.Unmarshal([]byte(got.stdout), &remoteStats))

	app.srv.Close()
	require.NoError(t, db.Close())
	for i, cmd := range commands {
		local := c.run(cmd.stdin, append([]string{"--db", c.path("tokens.db")}, cmd.args...)...)
		assert.Equal(t, local, remote[i], "%v", cmd.args)
	}
	got = c.run("", "--db", c.path("tokens.db"), "stats", "--json")
	require.Equal(t, exitOK, got.code, got.stderr)
	var localStats statsJSON
	require.NoError(t, json.Unmarshal([]byte(got.stdout), &localStats))
	assert.Equal(t, localStats.Tokens, remoteStats.Tokens)
	assert.Equal(t, localStats.File, remoteStats.File)
	assert.Equal(t, localStats.Bolt.PageSize, remoteStats.Bolt.PageSize)
	assert.Len(t, remoteStats.Bolt.Buckets, len(localStats.Bolt.Buckets))
}

// TestRemote_Errors: what goes wrong with --url says what and where, with
// the exit code and --json error code of its kind, and never shows a token.
func TestRemote_Errors(t *testing.T) {
	c := newCLI(t)
	db := openFile(t, c.path("tokens.db"), func(o *tokenstore.Options) { o.MaxTokensPerSubject = 1 })
	app := serve(t, c, db)
	alice, _ := app.issue("alice", tokenstore.WithMetadata(map[string]string{"scope": "read"}))
	require.NoError(t, os.WriteFile(c.path("alice-token"), []byte(alice+"\n"), 0o600))
	require.NoError(t, os.WriteFile(c.path("empty"), nil, 0o600))
	other, err := tokenstore.Open(c.path("other.db"), &tokenstore.Options{SweepInterval: -1})
	require.NoError(t, err)
	stranger, _, err := other.Issue(context.Background(), "ops-alice", tokenstore.WithMetadata(map[string]string{"scope": admin.DefaultScope}))
	require.NoError(t, err)
	require.NoError(t, other.Close())

	abcFormat, err := tokenstore.NewFormat("abc")
	require.NoError(t, err)
	abc, _ := abcFormat.Generate()

	// A port nothing listens on.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	down := "http://" + ln.Addr().String() + "/admin"
	require.NoError(t, ln.Close())

	tests := []struct {
		name     string
		env      []string
		args     []string
		wantCode int
		wantErr  string // errorJSON's code
		want     string // in the message
	}{
		{"no credential", nil, []string{"--url", app.url, "list", "--subject", "alice"}, exitUsage, "usage",
			"--url needs an admin credential: name a file holding an admin token with --credential-file, or set TOKENSTORE_ADMIN_TOKEN (never on the command line, where ps shows it)"},
		{"credential file missing", nil, []string{"--url", app.url, "--credential-file", "nope", "stats"}, exitUsage, "not_exist", "--credential-file nope does not exist"},
		{"credential file empty", nil, []string{"--url", app.url, "--credential-file", "empty", "stats"}, exitUsage, "usage", "--credential-file empty is empty: put the admin token on its first line"},
		{"wrong credential in the environment", []string{"TOKENSTORE_ADMIN_TOKEN=" + stranger}, []string{"--url", app.url, "stats"}, exitFailed, "unauthorized",
			"the application at " + app.url + " refused the admin credential from $TOKENSTORE_ADMIN_TOKEN: it is not one of the application's tokens, or it was revoked or has expired (401 unauthorized)"},
		{"garbage credential", []string{"TOKENSTORE_ADMIN_TOKEN=hunter2"}, []string{"--url", app.url, "list", "--subject", "alice"}, exitFailed, "unauthorized", "refused the admin credential from $TOKENSTORE_ADMIN_TOKEN"},
		{"credential without the admin scope", nil, []string{"--url", app.url, "--credential-file", "alice-token", "revoke", "--subject", "alice"}, exitFailed, "forbidden",
			`the admin credential from --credential-file alice-token is a valid token without the admin permission (a token needs the scope "tokenstore:admin" in its metadata) (403 forbidden)`},
		{"server down", nil, app.args("stats")[2:], exitFailed, "unreachable", "cannot reach the application at " + down + ": dial tcp"},
		{"not the admin prefix", nil, []string{"--url", app.srv.URL + "/api", "--credential-file", app.cred, "stats"}, exitFailed, "bad_answer",
			app.srv.URL + "/api did not answer as the tokenstore admin API"},
		{"a page, not the API", nil, []string{"--url", app.srv.URL + "/home", "--credential-file", app.cred, "list", "--subject", "alice"}, exitFailed, "bad_answer",
			app.srv.URL + "/home did not answer as the tokenstore admin API"},
		{"an empty --url", nil, []string{"--url", "", "--credential-file", app.cred, "stats"}, exitUsage, "usage", "--url is empty"},
		{"not a URL", nil, []string{"--url", "127.0.0.1:8080", "--credential-file", app.cred, "stats"}, exitUsage, "usage", `--url "127.0.0.1:8080" is not an http:// or https:// URL`},
		{"--db and --url", nil, append([]string{"--db", "tokens.db"}, app.args("stats")...), exitUsage, "usage", "give --db (a token file) or --url (a running application), not both"},
		{"--credential-file without --url", nil, []string{"--db", "tokens.db", "--credential-file", app.cred, "stats"}, exitUsage, "usage", "--credential-file is the admin credential for --url"},
		{"list without --subject", nil, app.args("list"), exitUsage, "usage", "with --url, list needs --subject"},
		{"list --all", nil, app.args("list", "--subject", "alice", "--all"), exitUsage, "usage", "with --url, list shows live tokens only: --all needs the file (--db)"},
		{"a malformed token", nil, app.args("inspect", "-"), exitFailed, "malformed", "invalid token: malformed: length 8, want 53"},
		{"a token of another prefix", nil, app.args("--prefix", "abc", "inspect", "-"), exitFailed, "malformed",
			"invalid token: malformed: not a token of this store (wrong length, prefix or checksum)"},
		{"an unknown token", nil, app.args("inspect", "-"), exitFailed, "not_found", "invalid token: not found (never issued, revoked, or expired and swept)"},
		{"beyond the subject's token limit", nil, app.args("issue", "--subject", "alice"), exitFailed, "token_limit", "tokenstore: issue: subject has too many tokens: 1 live tokens, limit 1\n"},
		{"a token given as the subject", nil, app.args("list", "--subject", alice), exitUsage, "invalid_subject", "--subject was given a token, not a subject"},
		{"check", nil, app.args("check"), exitUsage, "file_only", "check is not available with --url: it reads every page of the file"},
		{"backup", nil, app.args("backup", "b.db"), exitUsage, "file_only", "backup is not available with --url"},
		{"compact", nil, app.args("compact"), exitUsage, "file_only", "compact is not available with --url"},
		{"sweep", nil, app.args("sweep"), exitUsage, "file_only", "sweep is not available with --url: the application's own sweeper deletes expired tokens"},
		{"validate", nil, app.args("validate", "-"), exitUsage, "file_only", "validate is not available with --url: it counts a use"},
		{"rotate", nil, app.args("rotate", "-"), exitUsage, "file_only", "rotate is not available with --url"},
		{"bench", nil, app.args("bench"), exitUsage, "file_only", "bench is not available with --url"},
		{"a file-only command under TOKENSTORE_URL", []string{"TOKENSTORE_URL=" + app.url}, []string{"compact"}, exitUsage, "file_only",
			"compact is not available with --url ($TOKENSTORE_URL is set; --db FILE runs on a file)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := tt.args
			if tt.name == "server down" {
				args = append([]string{"--url", down}, args...)
			}
			r := &cli{t: t, dir: c.dir, env: tt.env}
			stdin := map[string]string{"a malformed token": "tks_nope\n", "a token of another prefix": abc + "\n", "an unknown token": stranger + "\n",
				"validate": alice + "\n", "rotate": alice + "\n"}[tt.name]
			got := r.run(stdin, args...)
			assert.Equal(t, tt.wantCode, got.code, got.stderr)
			assert.Empty(t, got.stdout)
			assert.Contains(t, got.stderr, tt.want)
			assert.Equal(t, 1, strings.Count(got.stderr, "tokenstore: "), "one prefix: %s", got.stderr)
			got = r.run(stdin, append(args, "--json")...)
			assert.Equal(t, tt.wantCode, got.code, got.stderr)
			e := decodeError(t, got.stdout)
			assert.Equal(t, tt.wantErr, e.Code)
			assert.Equal(t, strings.SplitN(got.stderr, "\n", 2)[0], e.Message)
			assertNoToken(t, got.stdout+got.stderr, app.admin, alice, stranger)
		})
	}

	// Nothing was lost or changed by any of it.
	infos, err := db.List(context.Background(), "alice")
	require.NoError(t, err)
	assert.Len(t, infos, 1)

	// The application's store fails (here: closed under it).
	require.NoError(t, db.Close())
	got := c.run("", app.args("stats", "--json")...)
	assert.Equal(t, exitFailed, got.code)
	assert.Equal(t, "tokenstore: the application at "+app.url+" failed: the store is closed, did not answer in time, or the request was cancelled (503 temporarily_unavailable)\n", got.stderr)
	assert.Equal(t, "server_error", decodeError(t, got.stdout).Code)
}

// TestRemote_Environment: TOKENSTORE_URL and TOKENSTORE_ADMIN_TOKEN do
// what --url and --credential-file do; --db wins over TOKENSTORE_URL; a
// credential file others may read is named.
func TestRemote_Environment(t *testing.T) {
	c := newCLI(t)
	db := openFile(t, c.path("tokens.db"))
	app := serve(t, c, db)
	leaked, info := app.issue("alice")
	e := &cli{t: t, dir: c.dir, env: []string{"TOKENSTORE_URL=" + app.url, "TOKENSTORE_ADMIN_TOKEN=" + app.admin}}

	got := e.run("", "list", "--subject", "alice", "--json")
	require.Equal(t, exitOK, got.code, got.stderr)
	assert.Equal(t, info.ID.String(), decodeLines[infoJSON](t, got.stdout)[0].ID)

	// --db on a file the application holds: the file mode, which says
	// how to use --url instead.
	got = e.run("", "--db", "tokens.db", "--timeout", "100ms", "list", "--subject", "alice")
	assert.Equal(t, exitFailed, got.code)
	assert.Contains(t, got.stderr, "tokens.db is held by another process")
	assert.Contains(t, got.stderr, "run list, inspect, revoke, issue, stats or expiring through it with --url URL")

	got = e.run(leaked+"\n", "revoke")
	require.Equal(t, exitOK, got.code, got.stderr)
	assert.Equal(t, "revoked 1 token\n", got.stdout)
	_, err := db.Validate(context.Background(), leaked)
	assert.ErrorIs(t, err, tokenstore.ErrNotFound)

	// An application that accepts the connection and never answers.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer silent.Close()
	mute := "http://" + silent.Addr().String() + "/admin"
	got = c.run("", "--url", mute, "--credential-file", app.cred, "--timeout", "200ms", "stats", "--json")
	assert.Equal(t, exitFailed, got.code)
	assert.Equal(t, "tokenstore: no answer from the application at "+mute+" within 200ms (is it overloaded? a longer --timeout waits more)\n", got.stderr)
	assert.Equal(t, "unreachable", decodeError(t, got.stdout).Code)

	// Plain HTTP beyond loopback: a warning. The request itself must not
	// leave the machine (tests send traffic to loopback only): it goes to
	// an HTTP proxy on a loopback port where nothing listens, and fails.
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	proxy := "http://" + closed.Addr().String()
	require.NoError(t, closed.Close())
	viaProxy := &cli{t: t, dir: c.dir, env: []string{"HTTP_PROXY=" + proxy, "NO_PROXY=", "no_proxy="}}
	got = viaProxy.run("", "--url", "http://192.0.2.1:9/admin", "--credential-file", app.cred, "--timeout", "200ms", "stats")
	assert.Equal(t, exitFailed, got.code)
	assert.Contains(t, got.stderr, "tokenstore: warning: sending the admin credential to 192.0.2.1:9 over plain HTTP, readable on the network: use https://\n")
	assert.Contains(t, got.stderr, "http://192.0.2.1:9/admin")
	assert.Contains(t, got.stderr, "proxyconnect tcp: dial tcp "+closed.Addr().String(), "the request went to the loopback proxy, nowhere else")

	require.NoError(t, os.Chmod(app.cred, 0o644))
	got = c.run("", app.args("stats")...)
	require.Equal(t, exitOK, got.code, got.stderr)
	assert.Equal(t, "tokenstore: warning: "+app.cred+" holds an admin credential and other users may read it (mode 0644): chmod 600 it\n", got.stderr)
}

// TestRemote_Expired: a token past its deadline, not swept yet, reads as
// it does on the file: inspect --id prints its details and exits 1,
// inspect by token refuses it.
func TestRemote_Expired(t *testing.T) {
	c := newCLI(t)
	var issuing atomic.Bool
	issuing.Store(true)
	db := openFile(t, c.path("tokens.db"), func(o *tokenstore.Options) {
		o.Now = func() time.Time {
			if issuing.Load() {
				return time.Now().Add(-2 * time.Hour)
			}
			return time.Now()
		}
	})
	app := serve(t, c, db)
	token, info := app.issue("alice", tokenstore.WithPolicy(tokenstore.Absolute(time.Hour)))
	issuing.Store(false) // issued two hours ago for one hour

	commands := [][]string{
		{"inspect", "--id", info.ID.String(), "--json"},
		{"inspect", "--json"},
		{"inspect"},
		{"list", "--subject", "alice"},
	}
	remote := make([]result, len(commands))
	for i, args := range commands {
		remote[i] = c.run(token+"\n", app.args(args...)...)
	}
	assert.Equal(t, exitFailed, remote[0].code)
	var ti infoJSON
	require.NoError(t, json.Unmarshal([]byte(remote[0].stdout), &ti), "the details, and no error object after them")
	assert.True(t, ti.Expired)
	assert.Equal(t, "tokenstore: token "+info.ID.String()+" has expired (not swept yet)\n", remote[0].stderr)
	assert.Equal(t, "expired", decodeError(t, remote[1].stdout).Code)
	assert.Equal(t, "tokenstore: invalid token: expired\n", remote[2].stderr)
	assert.Equal(t, "no live tokens for subject \"alice\"\n", remote[3].stderr)

	got := c.run("", app.args("inspect", "--id", info.ID.String())...)
	assert.Equal(t, exitFailed, got.code)
	assert.Regexp(t, `(?m)^expires +\S+ \(1h ago\)$`, got.stdout)

	app.srv.Close()
	require.NoError(t, db.Close())
	for i, args := range commands {
		local := c.run(token+"\n", append([]string{"--db", "tokens.db"}, args...)...)
		assert.Equal(t, local, remote[i], "%v", args)
	}
}
