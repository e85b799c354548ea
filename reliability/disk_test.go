//go:build linux

package reliability_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tokenstore/tokenstore"
	"github.com/tokenstore/tokenstore/tokenstoretest"
)

// Test 3: disk full.
//
// The parent fills a file; a child opens it with RLIMIT_FSIZE at the file's
// size (SIGXFSZ ignored, so a write past it fails with EFBIG instead of
// killing the process) and issues tokens with 1 KiB of metadata until Issue
// fails. Then it reads everything, tries a revocation, and closes. The
// parent reopens the file without the limit.

const diskMeta = 1000 // bytes of metadata per token the child issues

func diskFullChild(w *lineWriter) error {
	ctx := context.Background()
	path := os.Getenv("TOKENSTORE_TEST_PATH")
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	signal.Ignore(syscall.SIGXFSZ)
	limit := uint64(st.Size())
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &syscall.Rlimit{Cur: limit, Max: limit}); err != nil {
		return err
	}
	b, err := os.ReadFile(os.Getenv("TOKENSTORE_TEST_POOL"))
	if err != nil {
		return err
	}
	pre := strings.Fields(string(b))
	clock := tokenstoretest.NewClockAt(epoch.Add(time.Minute)) // fixed: nothing expires, Validate writes nothing
	db, err := tokenstore.Open(path, &tokenstore.Options{Now: clock.Now, SweepInterval: -1})
	if err != nil {
		return err
	}
	meta := tokenstore.WithMetadata(map[string]string{"pad": strings.Repeat("x", diskMeta)})
	var issued []string
	issue := func(i int) error {
		tok, info, err := db.Issue(ctx, fmt.Sprintf("full-%d", i%50), meta)
		if err != nil {
			if tok != "" || info.ID != uuid.Nil {
				w.printf("leak Issue failed but returned a token or an ID")
			}
			w.printf("F %s", errString(err))
			return err
		}
		w.printf("I %s", tok)
		issued = append(issued, tok)
		return nil
	}
	full := false
	for i := range 100000 {
		if err := issue(i); err != nil {
			full = true
			break
		}
	}
	if !full {
		return errors.New("Issue never failed: the limit did not bite")
	}
	for i := range 20 { // each further Issue fails cleanly or, if a rollback freed a page, succeeds durably
		_ = issue(i)
	}
	if _, err := db.IssueBatch(ctx, []tokenstore.IssueRequest{{Subject: "batch"}, {Subject: "batch"}}); err != nil {
		w.printf("B fail")
	} else {
		w.printf("B ok")
	}
	// Reads keep working.
	ok, bad := 0, 0
	for _, tok := range append(pre, issued...) {
		_, err1 := db.Validate(ctx, tok)
		_, err2 := db.Lookup(ctx, tok)
		if err1 == nil && err2 == nil {
			ok++
		} else {
			bad++
			w.printf("read %v %v", err1, err2)
		}
	}
	list, err := db.List(ctx, "full-0")
	w.printf("R %d %d list %d %v", ok, bad, len(list), err)
	problems, err := db.Check(ctx)
	w.printf("K %d %v", len(problems), err)
	// A revocation may fail for want of space; either way it must be all
	// or nothing.
	if err := db.Revoke(ctx, pre[0]); err != nil {
		w.printf("V fail %v", err)
	} else {
		w.printf("V ok")
	}
	if err := db.Close(); err != nil {
		w.printf("C %v", err)
	} else {
		w.printf("C ok")
	}
	st2, err := os.Stat(path)
	if err != nil {
		return err
	}
	w.printf("S %d %d", st.Size(), st2.Size())
	return nil
}

func TestReliability_DiskFull(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "tokens.db")
	clock := tokenstoretest.NewClockAt(epoch)
	db, err := tokenstore.Open(path, &tokenstore.Options{Now: clock.Now, SweepInterval: -1})
	require.NoError(t, err)
	reqs := make([]tokenstore.IssueRequest, 300)
	for i := range reqs {
		reqs[i] = tokenstore.IssueRequest{Subject: fmt.Sprintf("user-%d", i%30), Metadata: map[string]string{"i": strconv.Itoa(i)}}
	}
	out, err := db.IssueBatch(ctx, reqs)
	require.NoError(t, err)
	var pre []string
	for _, o := range out {
		pre = append(pre, o.Token)
	}
	require.NoError(t, db.Close())
	pool := filepath.Join(dir, "pool")
	require.NoError(t, os.WriteFile(pool, []byte(strings.Join(pre, "\n")), 0o600))

	lines := startChild(t, "diskfull", nil, "TOKENSTORE_TEST_PATH="+path, "TOKENSTORE_TEST_POOL="+pool).run()
	var (
		issued               []string
		failures             []string
		readOK, readBad      int
		revoked, checkIssues = false, -1
		limit, sizeAfter     int64
		batchOK              bool
	)
	for _, l := range lines {
		f := strings.Fields(l)
		switch f[0] {
		case "I":
			issued = append(issued, f[1])
		case "F":
			failures = append(failures, strings.TrimPrefix(l, "F "))
		case "R":
			readOK, _ = strconv.Atoi(f[1])
			readBad, _ = strconv.Atoi(f[2])
			assert.Equal(t, "<nil>", f[5], "List while full")
		case "K":
			checkIssues, _ = strconv.Atoi(f[1])
		case "V":
			revoked = f[1] == "ok"
		case "B":
			batchOK = f[1] == "ok"
		case "C":
			// Close returns (it must not hang) and closes the file; it may
			// report that the last uses and bbolt's freelist could not be
			// written. The reopen below shows nothing stored was lost.
			if f[1] != "ok" {
				assert.Contains(t, l, "too large", "Close while full fails only for want of space")
			}
		case "S":
			limit, _ = strconv.ParseInt(f[1], 10, 64)
			sizeAfter, _ = strconv.ParseInt(f[2], 10, 64)
		case "leak":
			t.Error(l)
		}
	}
	require.NotEmpty(t, failures)
	for _, f := range failures {
		for _, tok := range issued {
			assert.NotContains(t, f, tok[4:])
		}
	}
	assert.False(t, batchOK, "IssueBatch while full")
	assert.Zero(t, readBad, "reads while full")
	assert.Equal(t, len(pre)+len(issued), readOK)
	assert.Zero(t, checkIssues, "Check while full")
	assert.LessOrEqual(t, sizeAfter, limit)

	// Without the limit: nothing lost, everything works.
	db = mustOpen(t, path, &tokenstore.Options{Now: clock.Now, SweepInterval: -1})
	mustCheck(t, db)
	for i, tok := range append(pre, issued...) {
		_, err := db.Lookup(ctx, tok)
		if i == 0 && revoked {
			assert.ErrorIs(t, err, tokenstore.ErrNotFound, "the revocation acknowledged while full")
			continue
		}
		assert.NoError(t, err, "token %d", i)
	}
	for i := range reqs {
		reqs[i] = tokenstore.IssueRequest{Subject: "after", Metadata: map[string]string{"pad": strings.Repeat("y", diskMeta), "i": strconv.Itoa(i)}}
	}
	_, err = db.IssueBatch(ctx, reqs)
	require.NoError(t, err)
	for range 10 {
		_, _, err := db.Issue(ctx, "after")
		require.NoError(t, err)
	}
	_, err = db.RevokeSubject(ctx, "full-0")
	require.NoError(t, err)
	mustCheck(t, db)
	require.NoError(t, db.Close())
	st, err := os.Stat(path)
	require.NoError(t, err)
	assert.Greater(t, st.Size(), limit)
	t.Logf("disk full: limit %d KiB; %d Issues failed cleanly (no token, %q), %d succeeded and were kept; IssueBatch failed; "+
		"%d/%d reads ok while full; revoke while full: %v; reopened without the limit: all %d tokens there, Check clean, 310 more issued, file %d KiB",
		limit>>10, len(failures), failures[0], len(issued), readOK, readOK+readBad, revoked, len(pre)+len(issued), st.Size()>>10)
}

// Test 7: locks and permissions.

const lockTries = 20

func lockChild(w *lineWriter) error {
	path := os.Getenv("TOKENSTORE_TEST_PATH")
	var wg sync.WaitGroup
	for i := range lockTries + 1 {
		wg.Go(func() {
			start := time.Now()
			db, err := tokenstore.Open(path, &tokenstore.Options{LockTimeout: 200 * time.Millisecond, ReadOnly: i == lockTries})
			took := time.Since(start)
			if err == nil {
				_ = db.Close()
			}
			w.printf("T %d %t %d %s", i, errors.Is(err, tokenstore.ErrLocked), took.Microseconds(), errString(err))
		})
	}
	wg.Wait()
	return nil
}

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return strings.ReplaceAll(err.Error(), "\n", " ")
}

func TestLock_SecondProcess(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens.db")
	db := mustOpen(t, path, nil)
	lines := startChild(t, "lock", nil, "TOKENSTORE_TEST_PATH="+path).run()
	locked, roLocked := 0, false
	var slowest time.Duration
	fastest := time.Hour
	for _, l := range lines {
		f := strings.Fields(l)
		if f[0] != "T" {
			continue
		}
		i, _ := strconv.Atoi(f[1])
		us, _ := strconv.ParseInt(f[3], 10, 64)
		took := time.Duration(us) * time.Microsecond
		assert.Equal(t, "true", f[2], "try %d: %s", i, strings.Join(f[4:], " "))
		assert.Less(t, took, time.Second, "try %d", i)
		fastest = min(fastest, took)
		if i == lockTries {
			roLocked = f[2] == "true"
			continue
		}
		if f[2] == "true" {
			locked++
		}
		slowest = max(slowest, took)
	}
	assert.Equal(t, lockTries, locked)
	assert.True(t, roLocked, "a ReadOnly open while a writer holds the file")
	require.NoError(t, db.Close())
	db2 := mustOpen(t, path, &tokenstore.Options{LockTimeout: 200 * time.Millisecond})
	require.NoError(t, db2.Close())
	t.Logf("locks: %d/%d opens from a second process got ErrLocked with LockTimeout 200ms, after %s–%s; a ReadOnly open too; "+
		"after Close the file opens at once", locked, lockTries, fastest.Round(time.Millisecond), slowest.Round(time.Millisecond))
}

// permCheck records the outcome of permission checks.
type permCheck struct {
	fails  []string
	passed []string
}

func (p *permCheck) check(name string, ok bool, format string, args ...any) {
	if ok {
		p.passed = append(p.passed, name)
		return
	}
	p.fails = append(p.fails, name+": "+fmt.Sprintf(format, args...))
}

// file opens path, which this process cannot write, and checks what Open
// says without and with ReadOnly. token is in the file.
func (p *permCheck) file(name, path, token string) {
	ctx := context.Background()
	_, err := tokenstore.Open(path, &tokenstore.Options{LockTimeout: 100 * time.Millisecond})
	p.check(name+": Open refuses", err != nil, "Open succeeded")
	p.check(name+": Open says why", err != nil && strings.Contains(err.Error(), "ReadOnly"), "error %q does not point to Options.ReadOnly", errString(err))
	db, err := tokenstore.Open(path, &tokenstore.Options{ReadOnly: true})
	p.check(name+": opens with ReadOnly", err == nil, "%v", err)
	if err != nil {
		return
	}
	_, err = db.Lookup(ctx, token)
	p.check(name+": Lookup works", err == nil, "%v", err)
	_, _, err = db.Issue(ctx, "someone")
	p.check(name+": Issue says ErrReadOnly", errors.Is(err, tokenstore.ErrReadOnly), "%v", err)
	p.check(name+": Close", db.Close() == nil, "")
}

// newFile checks that Open creates a file of mode 0600 in dir.
func (p *permCheck) newFile(dir string) {
	path := filepath.Join(dir, "new.db")
	db, err := tokenstore.Open(path, nil)
	p.check("new file: Open creates it", err == nil, "%v", err)
	if err != nil {
		return
	}
	p.check("new file: Close", db.Close() == nil, "")
	st, err := os.Stat(path)
	p.check("new file: mode 0600", err == nil && st.Mode().Perm() == 0o600, "%v %v", st.Mode(), err)
}

// permChild runs the checks that root's powers would defeat: as root it
// mounts a directory read-only in a mount namespace of its own and opens
// the file in it; then it becomes nobody and opens a file of mode 0400.
func permChild(w *lineWriter) error {
	ro, r400, newDir, token := os.Getenv("TOKENSTORE_TEST_RO"), os.Getenv("TOKENSTORE_TEST_R400"), os.Getenv("TOKENSTORE_TEST_NEW"), os.Getenv("TOKENSTORE_TEST_TOKEN")
	var p permCheck
	if err := roMount(filepath.Dir(ro)); err != nil {
		w.printf("SKIP read-only mount: %v", err)
	} else {
		p.file("read-only mount", ro, token)
	}
	if err := syscall.Setgid(65534); err != nil {
		w.printf("SKIP mode 0400 and new file: cannot become nobody: %v", err)
	} else if err := syscall.Setuid(65534); err != nil {
		w.printf("SKIP mode 0400 and new file: cannot become nobody: %v", err)
	} else {
		p.file("mode 0400", r400, token)
		p.newFile(newDir)
	}
	for _, f := range p.fails {
		w.printf("FAIL %s", f)
	}
	for _, name := range p.passed {
		w.printf("PASS %s", name)
	}
	return nil
}

// roMount makes dir read-only, in this process's own mount namespace.
func roMount(dir string) error {
	if os.Getenv("TOKENSTORE_TEST_NONS") != "" {
		return errors.New("no mount namespace of its own (the parent could not create one)")
	}
	if err := syscall.Mount(dir, dir, "", syscall.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind mount: %w", err)
	}
	if err := syscall.Mount("", dir, "", syscall.MS_BIND|syscall.MS_REMOUNT|syscall.MS_RDONLY, ""); err != nil {
		return fmt.Errorf("read-only remount: %w", err)
	}
	return nil
}

func TestLock_Permissions(t *testing.T) {
	base := t.TempDir()
	roDir, r400Dir, newDir := filepath.Join(base, "ro"), filepath.Join(base, "r400"), filepath.Join(base, "new")
	for _, d := range []string{roDir, r400Dir, newDir} {
		require.NoError(t, os.Mkdir(d, 0o755))
	}
	ro, r400 := filepath.Join(roDir, "tokens.db"), filepath.Join(r400Dir, "tokens.db")
	db, err := tokenstore.Open(ro, nil)
	require.NoError(t, err)
	token, _, err := db.Issue(context.Background(), "user")
	require.NoError(t, err)
	require.NoError(t, db.Close())
	b, err := os.ReadFile(ro)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(r400, b, 0o400))

	var p permCheck
	if os.Geteuid() != 0 {
		t.Log("not root: the read-only mount case is skipped")
		p.file("mode 0400", r400, token)
		p.newFile(newDir)
	} else {
		// Root ignores file modes: the checks run in a child that gives up
		// root after mounting ro/ read-only in its own mount namespace.
		for _, d := range []string{filepath.Dir(base), base} {
			require.NoError(t, os.Chmod(d, 0o755))
		}
		require.NoError(t, os.Chown(r400, 65534, 65534))
		require.NoError(t, os.Chown(newDir, 65534, 65534))
		env := []string{"TOKENSTORE_TEST_RO=" + ro, "TOKENSTORE_TEST_R400=" + r400, "TOKENSTORE_TEST_NEW=" + newDir, "TOKENSTORE_TEST_TOKEN=" + token}
		c, err := tryStartChild(t, "perm", &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}, env...)
		if err != nil { // a container without CAP_SYS_ADMIN
			c = startChild(t, "perm", nil, append(env, "TOKENSTORE_TEST_NONS=1")...)
		}
		for _, l := range c.run() {
			if skip, ok := strings.CutPrefix(l, "SKIP "); ok {
				t.Log("skipped: " + skip)
			}
			if name, ok := strings.CutPrefix(l, "PASS "); ok {
				p.passed = append(p.passed, name)
			}
			if f, ok := strings.CutPrefix(l, "FAIL "); ok {
				p.fails = append(p.fails, f)
			}
		}
	}
	for _, f := range p.fails {
		t.Error(f)
	}
	t.Logf("permissions: %d checks passed: %s", len(p.passed), strings.Join(p.passed, "; "))
}
