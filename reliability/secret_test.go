package reliability_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tokenstore/tokenstore/internal/logtest"

	"github.com/tokenstore/tokenstore"
	"github.com/tokenstore/tokenstore/tokenstoretest"
)

// Test 9: secrets stay secret.

// secretWindow is how long a run of a token's body counts as a leak: 16
// base62 characters are 95 bits, never there by chance.
const secretWindow = 16

// leakIndex holds every secretWindow-long run of base62 characters in
// some bytes, so that a million tokens are looked up in it at once.
type leakIndex map[string]struct{}

func (ix leakIndex) add(b []byte) {
	isB62 := func(c byte) bool { return '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
	for i := 0; i < len(b); {
		j := i
		for j < len(b) && isB62(b[j]) {
			j++
		}
		for k := i; k+secretWindow <= j; k++ {
			ix[string(b[k:k+secretWindow])] = struct{}{}
		}
		i = j + 1
	}
}

// leaks reports whether any secretWindow-long part of tok's body is in ix.
func (ix leakIndex) leaks(tok string) bool {
	body := tok[strings.IndexByte(tok, '_')+1:]
	for k := 0; k+secretWindow <= len(body); k++ {
		if _, ok := ix[body[k:k+secretWindow]]; ok {
			return true
		}
	}
	return false
}

func TestSecret_NotInFileLogsOrErrors(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "tokens.db")
	var logs logtest.Buffer
	clock := tokenstoretest.NewClockAt(epoch)
	db := mustOpen(t, path, &tokenstore.Options{
		Now:           clock.Now,
		Logger:        slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		SweepInterval: -1, // Sweep below logs what it deletes
		TouchInterval: 10 * time.Millisecond,
	})
	const n, workers = 10000, 32
	toks := make([]string, n)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				p := tokenstore.Sliding(time.Hour, 0)
				if i%3 == 0 {
					p = tokenstore.Absolute(time.Second) // swept, and logged, later
				}
				tok, _, err := db.Issue(ctx, fmt.Sprintf("user-%d", i%100), tokenstore.WithPolicy(p),
					tokenstore.WithMetadata(map[string]string{"i": fmt.Sprint(i)}))
				if err != nil {
					t.Error(err)
					return
				}
				toks[i] = tok
			}
		})
	}
	wg.Wait()
	require.False(t, t.Failed())

	// Every kind of error, for many tokens: what an application would log.
	var errs []string
	var infos strings.Builder
	record := func(err error) {
		if err != nil {
			errs = append(errs, err.Error())
		}
	}
	for i := 0; i < n; i += 10 {
		tok := toks[i]
		info, err := db.Validate(ctx, tok)
		record(err)
		fmt.Fprintf(&infos, "%+v %v\n", info, info)
		for _, bad := range []string{tok[:len(tok)-1], tok + "x", tok[:10] + "!" + tok[11:], strings.ToUpper(tok), tok[:len(tok)-1] + "0", " " + tok} {
			_, err := db.Validate(ctx, bad)
			record(err)
			record(db.Revoke(ctx, bad))
			_, _, err = db.Rotate(ctx, bad)
			record(err)
		}
		if i%20 == 0 {
			record(db.Revoke(ctx, tok))
			record(db.Revoke(ctx, tok)) // ErrNotFound
			_, err := db.Validate(ctx, tok)
			record(err)
			_, _, err = db.Rotate(ctx, tok)
			record(err)
		}
	}
	clock.Advance(2 * time.Second) // a third have expired
	for i := 0; i < n; i += 30 {
		_, err := db.Validate(ctx, toks[i])
		record(err)
		_, _, err = db.Rotate(ctx, toks[i])
		record(err)
	}
	swept, err := db.Sweep(ctx)
	require.NoError(t, err)
	if swept == 0 {
		t.Fatal("Sweep deleted nothing: the log part of the test would prove nothing")
	}
	problems, err := db.Check(ctx)
	require.NoError(t, err)
	errs = append(errs, problems...)
	fmt.Fprintf(&infos, "%+v\n", db.Stats())
	require.NoError(t, db.Close())

	file, err := os.ReadFile(path)
	require.NoError(t, err)
	logged := logs.Bytes()
	ix := leakIndex{}
	ix.add(file)
	ix.add(logged)
	ix.add([]byte(strings.Join(errs, "\n")))
	ix.add([]byte(infos.String()))
	leaked := 0
	for _, tok := range toks {
		if ix.leaks(tok) {
			leaked++
		}
	}
	assert.Zero(t, leaked, "tokens found in the file, the log or an error")
	assert.NotContains(t, string(file), "tks_", "the file holds a token prefix")
	assert.NotEmpty(t, logged)
	t.Logf("secrets: %d tokens issued by %d goroutines; 0 found (any %d-character run of a body) in the %d KiB file, %d bytes of debug log, %d error strings, or printed Infos",
		n, workers, secretWindow, len(file)>>10, len(logged), len(errs))
}

func TestSecret_MillionDistinct(t *testing.T) {
	const n, workers = 1_000_000, 2
	format, err := tokenstore.NewFormat("")
	require.NoError(t, err)
	hashes := make([][32]byte, n)
	counts := make([][62]int64, workers)
	badLen := make([]int, workers)
	start := time.Now()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				tok, h := format.Generate()
				if len(tok) != format.Len() {
					badLen[w]++
				}
				hashes[i] = h
				for _, c := range []byte(tok[4+8 : 4+8+35]) { // after the issue time (8 characters)
					counts[w][b62Index(c)]++
				}
				if i%1000 == 0 {
					if got, err := format.Parse(tok); err != nil || got != h {
						t.Errorf("a generated token does not parse: %v", err)
					}
				}
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	slices.SortFunc(hashes, func(a, b [32]byte) int { return bytes.Compare(a[:], b[:]) })
	dups := 0
	for i := 1; i < n; i++ {
		if hashes[i] == hashes[i-1] {
			dups++
		}
	}
	assert.Zero(t, dups, "duplicate tokens")
	assert.Zero(t, badLen[0]+badLen[1], "tokens of another length")
	// The 35 random characters are uniform over base62: chi-square, 61
	// degrees of freedom, refused at p < 1e-6 (129).
	var total [62]int64
	for _, c := range counts {
		for i, v := range c {
			total[i] += v
		}
	}
	expect := float64(n*35) / 62
	chi := 0.0
	for _, v := range total {
		chi += (float64(v) - expect) * (float64(v) - expect) / expect
	}
	assert.Less(t, chi, 129.0, "base62 digits are not uniform")
	t.Logf("1,000,000 tokens in %s: all distinct, all %d characters; chi-square of the random digits %.1f (61 degrees of freedom; p=1e-6 at 129)",
		took.Round(time.Millisecond), format.Len(), chi)
}

func b62Index(c byte) int {
	switch {
	case c <= '9':
		return int(c - '0')
	case c <= 'Z':
		return int(c-'A') + 10
	}
	return int(c-'a') + 36
}
