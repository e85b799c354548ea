package tokenstore_test

import (
	"crypto/sha256"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tokenstore/tokenstore"
)

// FuzzParse feeds the token parser arbitrary strings, for the default
// prefix and a longer one. Parse must never panic; it accepts exactly the
// strings of the format's length and prefix whose checksum holds (of
// either version), returns their hash, and refuses the rest as ErrMalformed — a string of the
// wrong length on its length alone, before any hashing — with an error
// that never repeats the input. Seeds: testdata/fuzz/FuzzParse.
//
//	go test -run='^$' -fuzz='^FuzzParse$' -fuzztime=10s .
func FuzzParse(f *testing.F) {
	formats := []tokenstore.Format{fuzzFormat(f, ""), fuzzFormat(f, "acme2")}
	for _, format := range formats {
		tok, _ := format.Generate()
		f.Add(tok)
		f.Add(tok[:len(tok)-1])
		f.Add(tok + "A")
		f.Add(strings.ToUpper(tok))
		f.Add(tok[:len(tok)-1] + "!")
	}
	f.Add("")
	f.Add("tks_")
	f.Add("Bearer tks_")
	f.Add(strings.Repeat("\xff", 53))
	f.Fuzz(func(t *testing.T, s string) {
		for _, format := range formats {
			h, err := format.Parse(s)
			if err != nil {
				require.ErrorIs(t, err, tokenstore.ErrMalformed)
				if len(s) != format.Len() {
					assert.Contains(t, err.Error(), "length", "a string of the wrong length is refused for its length")
				}
				if len(s) >= 8 {
					assert.NotContains(t, err.Error(), s, "the error repeats the input")
				}
				continue
			}
			require.Len(t, s, format.Len())
			require.True(t, strings.HasPrefix(s, format.Prefix()+"_"))
			// The hash: the SHA-256 for a token without a time (its
			// checksum a plain CRC32), else the time it carries and the
			// SHA-256's first 26 bytes.
			sum := sha256.Sum256([]byte(s))
			if h != tokenstore.Hash(sum) {
				require.Equal(t, sum[:26], h[6:], "the SHA-256 after the time")
				var ms int64
				for _, c := range s[len(format.Prefix())+1:][:8] {
					ms = ms*62 + int64(strings.IndexRune(base62, c))
				}
				require.Equal(t, ms, int64(h[0])<<40|int64(h[1])<<32|int64(h[2])<<24|int64(h[3])<<16|int64(h[4])<<8|int64(h[5]), "the time the token's first characters carry")
			}
			// A typo in a valid token is caught offline: the checksum
			// refuses every one-character change.
			for i := len(format.Prefix()) + 1; i < len(s); i++ {
				b := []byte(s)
				b[i] = "0aZ"[(strings.IndexByte("0aZ", s[i])+1)%3]
				if b[i] == s[i] {
					continue
				}
				_, err := format.Parse(string(b))
				require.ErrorIs(t, err, tokenstore.ErrMalformed, "changed at %d", i)
			}
		}
	})
}

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

func fuzzFormat(t testing.TB, prefix string) tokenstore.Format {
	f, err := tokenstore.NewFormat(prefix)
	require.NoError(t, err)
	return f
}

// TestFuzzParse_OversizeRefusedBeforeHashing: refusing a megabyte of
// garbage costs far less than hashing it would (a tenth at most), and
// allocates only the error, never a copy of the input.
func TestFuzzParse_OversizeRefusedBeforeHashing(t *testing.T) {
	format := fuzzFormat(t, "")
	huge := strings.Repeat("tks_", 1<<18) // 1 MiB
	best := func(fn func()) time.Duration {
		d := time.Duration(1 << 62)
		for range 5 {
			start := time.Now()
			for range 50 {
				fn()
			}
			d = min(d, time.Since(start))
		}
		return d
	}
	parse := best(func() { _, _ = format.Parse(huge) })
	hash := best(func() { _ = sha256.Sum256([]byte(huge)) })
	assert.Less(t, parse*10, hash, "50 refusals of 1 MiB took %s; hashing it 50 times %s", parse, hash)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range 100 {
		_, _ = format.Parse(huge)
	}
	runtime.ReadMemStats(&after)
	perCall := (after.TotalAlloc - before.TotalAlloc) / 100
	assert.Less(t, perCall, uint64(4096), "bytes allocated refusing 1 MiB: the input is not copied")
	t.Logf("oversize: refusing 1 MiB %s per call, hashing it %s; %d bytes allocated per refusal (the error)", parse/50, hash/50, perCall)
}
