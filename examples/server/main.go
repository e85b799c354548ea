// Command server is a tokenstore application shaped for production: a
// login route that issues tokens, an API route the middleware protects,
// the admin handler mounted at /admin/, and a graceful shutdown that
// persists the last uses of every token.
//
//	server -addr 127.0.0.1:8080 -db tokens.db -users users.json
//	server hash-password < password     # a users.json "password" value
//
// Routes:
//
//	POST /login     {"username": ..., "password": ...} → {"token": ..., "expires_at": ...}
//	GET  /api/me    the caller's subject and token expiry (Authorization: Bearer <token>)
//	POST /logout    revokes the caller's token
//	GET  /healthz   200 while serving
//	     /admin/    the tokenstore admin API and page, for tokens with the scope tokenstore:admin
//
// On SIGINT or SIGTERM it stops accepting connections, lets requests in
// flight finish (http.Server.Shutdown, up to 10 s), then closes the store
// (DB.Close), which writes the last uses still in memory. A process ended
// by log.Fatal or os.Exit skips Close and loses them.
package main

import (
	"bytes"
	"context"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/tokenstore/tokenstore"
	"github.com/tokenstore/tokenstore/admin"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "server:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) (err error) {
	if len(args) > 0 && args[0] == "hash-password" {
		return hashPassword(stdin, stdout)
	}
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:8080", "address to listen on (port 0: any free port)")
	dbPath := fs.String("db", "tokens.db", "token file")
	usersPath := fs.String("users", "users.json", "users file: [{\"username\", \"password\" (from hash-password), \"scope\"}]")
	insecure := fs.Bool("insecure-cookies", false, "admin page cookies without Secure, for plain HTTP during development")
	if err := fs.Parse(args); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))

	users, err := loadUsers(*usersPath)
	if err != nil {
		return err
	}
	db, err := tokenstore.Open(*dbPath, &tokenstore.Options{
		Policy: tokenstore.Sliding(24*time.Hour, 30*24*time.Hour),
		Logger: log,
	})
	if err != nil {
		return err
	}
	// Close runs last, after the server has stopped: it writes the last
	// uses that Validate kept in memory.
	defer func() {
		if cerr := db.Close(); cerr != nil {
			err = errors.Join(err, cerr)
			return
		}
		log.Info("token store closed", "path", *dbPath)
	}()

	adm, err := admin.New(db, &admin.Options{Prefix: "/admin", Logger: log, InsecureCookies: *insecure})
	if err != nil {
		return err
	}
	app := &app{db: db, users: users, log: log}
	auth := tokenstore.Middleware(db, tokenstore.WithLogger(log))
	mux := http.NewServeMux()
	mux.HandleFunc("POST /login", app.login)
	mux.Handle("GET /api/me", auth(http.HandlerFunc(app.me)))
	mux.Handle("POST /logout", auth(http.HandlerFunc(app.logout)))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	mux.Handle("/admin/", adm)

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	log.Info("listening", "url", "http://"+ln.Addr().String())

	select {
	case err := <-served: // the listener failed
		return err
	case <-ctx.Done():
	}
	stop() // a second signal kills the process at once
	log.Info("shutting down: finishing requests in flight")
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

type app struct {
	db    *tokenstore.DB
	users map[string]user
	log   *slog.Logger
}

// login checks a username and password and issues a token carrying the
// user's scope. The token is in the response body only: never logged.
func (a *app) login(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Username string `json:"username"`
		Password string `json:"password"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request"})
		return
	}
	u, ok := a.users[req.Username]
	if !u.check(req.Password) || !ok {
		a.log.Info("login refused", "username", req.Username)
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_grant"})
		return
	}
	token, info, err := a.db.Issue(r.Context(), req.Username, tokenstore.WithMetadata(map[string]string{"scope": u.Scope}))
	if err != nil {
		a.log.Error("issue failed", "username", req.Username, "err", err)
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "temporarily_unavailable"})
		return
	}
	a.log.Info("logged in", "subject", info.Subject, "token_id", info.ID)
	writeJSON(w, http.StatusOK, map[string]any{"token": token, "token_type": "Bearer", "expires_at": info.ExpiresAt.UTC()})
}

func (a *app) me(w http.ResponseWriter, r *http.Request) {
	info, _ := tokenstore.FromContext(r.Context())
	writeJSON(w, http.StatusOK, map[string]any{"subject": info.Subject, "token_id": info.ID, "expires_at": info.ExpiresAt.UTC()})
}

func (a *app) logout(w http.ResponseWriter, r *http.Request) {
	info, _ := tokenstore.FromContext(r.Context())
	if err := a.db.RevokeID(r.Context(), info.ID); err != nil && !errors.Is(err, tokenstore.ErrNotFound) {
		a.log.Error("logout failed", "token_id", info.ID, "err", err)
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "temporarily_unavailable"})
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// user is one entry of the users file. Password is "pbkdf2-sha256$<salt
// hex>$<key hex>", from hash-password: PBKDF2-HMAC-SHA256 with
// pbkdfIterations rounds, OWASP's figure for it (Password Storage Cheat
// Sheet).
type user struct {
	Username string `json:"username"`
	Password string `json:"password"`
	Scope    string `json:"scope"` // space-separated; "tokenstore:admin" opens /admin/
}

const pbkdfIterations = 600_000

// dummy is checked for unknown usernames, so that they cost what known
// ones do.
var dummy = user{Password: "pbkdf2-sha256$00000000000000000000000000000000$" + strings.Repeat("0", 64)}

func (u user) check(password string) bool {
	if u.Password == "" {
		u = dummy
	}
	salt, want, err := parseHash(u.Password)
	if err != nil {
		return false
	}
	got, err := pbkdf2.Key(sha256.New, password, salt, pbkdfIterations, len(want))
	return err == nil && subtle.ConstantTimeCompare(got, want) == 1
}

// parseHash reads a hash-password output. Its error never repeats h, which
// may be a password written where its hash belongs.
func parseHash(h string) (salt, key []byte, err error) {
	f := strings.Split(h, "$")
	if len(f) != 3 || f[0] != "pbkdf2-sha256" {
		return nil, nil, errors.New(`password: not "pbkdf2-sha256$<salt>$<key>" (run "server hash-password" and paste its output)`)
	}
	salt, err1 := hex.DecodeString(f[1])
	key, err2 := hex.DecodeString(f[2])
	if err1 != nil || err2 != nil || len(salt) == 0 || len(key) == 0 {
		return nil, nil, errors.New("password: the salt or key of the hash is not hexadecimal")
	}
	return salt, key, nil
}

// maxPassword bounds hash-password's input.
const maxPassword = 1024

func hashPassword(stdin io.Reader, stdout io.Writer) error {
	b, err := io.ReadAll(io.LimitReader(stdin, maxPassword+3)) // room for "\r\n"
	if err != nil {
		return err
	}
	pw := strings.TrimRight(string(b), "\r\n")
	switch {
	case pw == "":
		return errors.New("hash-password: give the password on stdin")
	case len(pw) > maxPassword:
		// Hashing a prefix would make a password that never logs in.
		return fmt.Errorf("hash-password: the password is longer than %d bytes", maxPassword)
	}
	salt := make([]byte, 16)
	rand.Read(salt)
	key, err := pbkdf2.Key(sha256.New, pw, salt, pbkdfIterations, 32)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "pbkdf2-sha256$%x$%x\n", salt, key)
	return err
}

func loadUsers(path string) (map[string]user, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	// A user who cannot log in fails here, at start, rather than as an
	// invalid_grant on every login with nothing in the log.
	var list []user
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&list); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	users := make(map[string]user, len(list))
	for _, u := range list {
		if err := tokenstore.ValidateSubject(u.Username); err != nil {
			return nil, fmt.Errorf("%s: user %q: %w", path, u.Username, err)
		}
		if _, _, err := parseHash(u.Password); err != nil {
			return nil, fmt.Errorf("%s: user %q: %w", path, u.Username, err)
		}
		if _, dup := users[u.Username]; dup {
			return nil, fmt.Errorf("%s: user %q is listed twice", path, u.Username)
		}
		users[u.Username] = u
	}
	return users, nil
}
