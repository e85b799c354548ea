package tokenstore

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"time"
)

// A token is "<prefix>_<body>", and its body is bodyLen base62 characters
// ending in checksumLen characters of a CRC32 of everything before them,
// as GitHub's tokens do: a typo, a truncation or a token of another system
// is refused offline, and secret scanners can match the shape. Two
// versions share that shape, told apart by the checksum alone (Parse reads
// no file):
//
//   - version 1 (before v0.1.0): 43 random characters (43 × log2(62) ≈
//     256.03 bits); checksum = CRC32 of the text; Hash = SHA-256(token).
//   - version 2: timeLen characters of the issue time (Unix milliseconds,
//     fixed width, most significant first, so tokens sort as their issue
//     times) then randomLen2 random characters (35 × log2(62) ≈ 208.4
//     bits); checksum = CRC32 of the text XOR checksumV2; Hash = the issue
//     time (6 bytes, big-endian ms) ‖ the first 26 bytes of SHA-256(token).
//
// A checksum holds for one version at most (checksumV2 is not zero), so
// a token of one version is never read as the other. Milliseconds, not
// seconds, because they are the store's resolution (a record's creation
// is the same instant) and tokens issued in one second at a high rate
// then still arrive nearly in key order; 8 characters hold 62^8 ms (6,900
// years), 6 bytes 2^48 ms (8,900).
const (
	randomLen1  = 43
	timeLen     = 8
	randomLen2  = bodyLen - checksumLen - timeLen // 35
	checksumLen = 6                               // 62^6 > 2^32
	bodyLen     = randomLen1 + checksumLen

	// checksumV2 is XORed into a version-2 token's CRC32 (any non-zero
	// constant would do; this one is the 32-bit golden ratio).
	checksumV2 = 0x9e3779b9
	// maxTokenMs is the latest issue time timeLen characters hold: a
	// time outside [0, maxTokenMs] is clamped into it (tokenMs).
	maxTokenMs = 62*62*62*62*62*62*62*62 - 1
	// hashTimeLen is the length of the time that starts a version-2 Hash.
	hashTimeLen = 6

	// MaxPrefixLen is the longest token prefix a store accepts.
	MaxPrefixLen = 16
	// DefaultPrefix is the token prefix when Options.Prefix is empty.
	DefaultPrefix = "tks"
)

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// base62Val maps a byte to its base62 digit, or 0xff.
var base62Val = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	for i := 0; i < len(base62); i++ {
		t[base62[i]] = byte(i)
	}
	return t
}()

// Hash is the only form in which a store keeps a token, so a copy of the
// file grants nothing. For a token issued since v0.1.0 it is the token's
// issue time, 6 bytes of big-endian Unix milliseconds, followed by the
// first 26 bytes (208 bits) of the token's SHA-256: records keyed by it
// are ordered by issue time, so tokens issued (and, under one policy,
// expiring) together share pages of the file. For a token of the earlier
// format (no time in it: see [Format.Parse]) it is the token's SHA-256,
// as files written before keep it. [Format.Parse] computes it.
type Hash [sha256.Size]byte

// Format generates and checks the tokens of one prefix. Its zero value is
// not usable; make one with [NewFormat]. A Format is safe for concurrent use.
type Format struct {
	prefix string
}

// NewFormat returns the token format for prefix: 1 to [MaxPrefixLen]
// lowercase ASCII letters or digits, starting with a letter ("" means
// [DefaultPrefix]).
func NewFormat(prefix string) (Format, error) {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	if len(prefix) > MaxPrefixLen {
		return Format{}, fmt.Errorf("tokenstore: prefix %q is longer than %d bytes", prefix, MaxPrefixLen)
	}
	for i := 0; i < len(prefix); i++ {
		c := prefix[i]
		if !('a' <= c && c <= 'z' || i > 0 && '0' <= c && c <= '9') {
			return Format{}, fmt.Errorf("tokenstore: prefix %q must be lowercase letters and digits, starting with a letter", prefix)
		}
	}
	return Format{prefix: prefix}, nil
}

// Prefix returns the format's prefix, without the underscore.
func (f Format) Prefix() string { return f.prefix }

// Len is the length of every token of this format.
func (f Format) Len() int { return len(f.prefix) + 1 + bodyLen }

// Generate returns a new random token issued now (time.Now) and its hash:
// GenerateAt(time.Now()).
func (f Format) Generate() (string, Hash) { return f.GenerateAt(time.Now()) }

// GenerateAt returns a new token that carries issue time at (to the
// millisecond; a time before 1970 is taken as 1970) and 208 random bits
// from crypto/rand, and its hash. Stores pass their own clock
// (Options.Now).
func (f Format) GenerateAt(at time.Time) (string, Hash) { return f.generate(tokenMs(at)) }

// generateV1 returns a token of the format before v0.1.0 (no issue time,
// 256 random bits, Hash = SHA-256), which stores still accept: tests make
// them with it.
func (f Format) generateV1() (string, Hash) { return f.generate(-1) }

// generate is render from crypto/rand: a version-2 token carrying ms, or
// a version-1 one when ms < 0.
func (f Format) generate(ms int64) (string, Hash) {
	var rnd [64]byte
	return f.render(ms, func() []byte {
		_, _ = rand.Read(rnd[:]) // crypto/rand.Read never fails since Go 1.24; it crashes the program instead
		return rnd[:]
	})
}

// Derive returns the token of this format that key derives from token at
// issue time at, and its hash: it carries at (as GenerateAt does) and its
// random part is drawn from HMAC-SHA256(key, token ‖ at) in counter mode,
// so the same key, token and time always give the same token, and only a
// holder of token (and of key) can compute it. Rotate with a grace uses
// it (RotateParams.Grace): the store keeps only hashes, yet a client that
// lost Rotate's answer and rotates again gets the same successor, whose
// time the store reads back from its hash ([Format.Rederive]). key must be
// a secret of at least 32 random bytes that the store keeps.
func (f Format) Derive(key []byte, token string, at time.Time) (string, Hash) {
	return f.derive(key, token, tokenMs(at))
}

// Rederive returns the token Derive(key, token, t) gave, where t is the
// issue time that successor (a hash Derive returned) carries, and whether
// its hash is successor: false means successor was not derived from token
// under key (the key has changed since, or successor is another token's).
// A successor derived by a build before v0.1.0, which carried no time,
// is recognised too.
func (f Format) Rederive(key []byte, token string, successor Hash) (string, bool) {
	if ms := hashMs(successor); ms <= maxTokenMs {
		if next, h := f.derive(key, token, ms); h == successor {
			return next, true
		}
	}
	if next, h := f.derive(key, token, -1); h == successor {
		return next, true
	}
	return "", false
}

// hashMs is the issue time (Unix ms) that h starts with if it is the hash
// of a version-2 token; for another it means nothing.
func hashMs(h Hash) int64 {
	var ms int64
	for _, b := range h[:hashTimeLen] {
		ms = ms<<8 | int64(b)
	}
	return ms
}

// derive is Derive at ms, or the version-1 derivation when ms < 0.
func (f Format) derive(key []byte, token string, ms int64) (string, Hash) {
	mac := hmac.New(sha256.New, key)
	var sum []byte
	ctr := byte(0)
	return f.render(ms, func() []byte {
		mac.Reset()
		mac.Write([]byte("tokenstore successor\x00"))
		mac.Write([]byte{ctr})
		mac.Write([]byte(token))
		if ms >= 0 {
			var t [8]byte
			binary.BigEndian.PutUint64(t[:], uint64(ms))
			mac.Write(t[:])
		}
		ctr++
		sum = mac.Sum(sum[:0])
		return sum
	})
}

// tokenMs is at in Unix milliseconds, clamped to what a token holds.
func tokenMs(at time.Time) int64 { return min(max(at.UnixMilli(), 0), maxTokenMs) }

// render builds a token from the bytes next returns, taking each byte
// below 248 (4 × 62, so that every digit is equally likely) as a base62
// digit until the random part is full, then the checksum: a version-2
// token carrying ms, or a version-1 one when ms < 0.
func (f Format) render(ms int64, next func() []byte) (string, Hash) {
	var buf [MaxPrefixLen + 1 + bodyLen]byte
	n := copy(buf[:], f.prefix)
	buf[n] = '_'
	n++
	randomLen, sumXor := randomLen1, uint32(0)
	if ms >= 0 {
		for i, x := timeLen-1, ms; i >= 0; i-- {
			buf[n+i] = base62[x%62]
			x /= 62
		}
		n += timeLen
		randomLen, sumXor = randomLen2, checksumV2
	}
	for filled := 0; filled < randomLen; {
		for _, b := range next() {
			if b < 248 && filled < randomLen {
				buf[n+filled] = base62[b%62]
				filled++
			}
		}
	}
	n += randomLen
	putChecksum(buf[n:n+checksumLen], crc32.ChecksumIEEE(buf[:n])^sumXor)
	n += checksumLen
	return string(buf[:n]), tokenHash(buf[:n], ms)
}

// tokenHash is the Hash of token (see Hash): the version-2 one when ms is
// its issue time, the SHA-256 when ms < 0.
func tokenHash(token []byte, ms int64) Hash {
	sum := sha256.Sum256(token)
	if ms < 0 {
		return sum
	}
	var h Hash
	for i := hashTimeLen - 1; i >= 0; i-- {
		h[i] = byte(ms)
		ms >>= 8
	}
	copy(h[hashTimeLen:], sum[:])
	return h
}

func putChecksum(dst []byte, c uint32) {
	for i := checksumLen - 1; i >= 0; i-- {
		dst[i] = base62[c%62]
		c /= 62
	}
}

// Parse checks token against the format and returns its hash. It reads
// no file and never allocates; a token of the wrong length is refused before
// any other work, so a megabyte of garbage costs what a short string does.
// Both versions of the format are accepted (a token issued before v0.1.0
// has no issue time in it): the checksum tells which a token is. Every
// failure is [ErrMalformed], and its text never repeats the token.
func (f Format) Parse(token string) (Hash, error) {
	if len(token) != f.Len() {
		return Hash{}, fmt.Errorf("%w: length %d, want %d", ErrMalformed, len(token), f.Len())
	}
	p := len(f.prefix)
	if token[:p] != f.prefix || token[p] != '_' {
		return Hash{}, fmt.Errorf("%w: not a %q token", ErrMalformed, f.prefix+"_")
	}
	var buf [MaxPrefixLen + 1 + bodyLen]byte
	n := copy(buf[:], token)
	for i := p + 1; i < n; i++ {
		if base62Val[buf[i]] == 0xff {
			return Hash{}, fmt.Errorf("%w: character at offset %d is not base62", ErrMalformed, i)
		}
	}
	var got uint64 // 62^6 > 2^32: a checksum no CRC32 gives is a mismatch
	for _, c := range buf[n-checksumLen : n] {
		got = got*62 + uint64(base62Val[c])
	}
	crc := uint64(crc32String(token[:n-checksumLen]))
	switch got {
	case crc:
		return tokenHash(buf[:n], -1), nil
	case crc ^ checksumV2:
		var ms int64
		for _, c := range buf[p+1 : p+1+timeLen] {
			ms = ms*62 + int64(base62Val[c])
		}
		return tokenHash(buf[:n], ms), nil
	}
	return Hash{}, fmt.Errorf("%w: checksum mismatch (mistyped or truncated?)", ErrMalformed)
}

// crc32String is crc32.ChecksumIEEE of s. Parse uses it on the token
// itself: handing a stack buffer to hash/crc32, whose implementation is
// chosen at run time, moves the buffer to the heap (one allocation per
// Validate). It reads 8 bytes a step as hash/crc32's own portable code
// does (slicing-by-8, on IEEETable extended by crcSlicing8): byte at a
// time, the CRC was 94 ns of a cold Validate's ~3.5 µs on the benchmark
// machine.
func crc32String(s string) uint32 {
	t := &crcSlicing8
	crc := ^uint32(0)
	for ; len(s) >= 8; s = s[8:] {
		crc ^= uint32(s[0]) | uint32(s[1])<<8 | uint32(s[2])<<16 | uint32(s[3])<<24
		crc = t[0][s[7]] ^ t[1][s[6]] ^ t[2][s[5]] ^ t[3][s[4]] ^
			t[4][crc>>24] ^ t[5][crc>>16&0xff] ^ t[6][crc>>8&0xff] ^ t[7][crc&0xff]
	}
	for i := 0; i < len(s); i++ {
		crc = t[0][byte(crc)^s[i]] ^ crc>>8
	}
	return ^crc
}

// crcSlicing8 is crc32.IEEETable and the seven tables slicing-by-8 derives
// from it (t[j][i] is the CRC of byte i followed by j zero bytes).
var crcSlicing8 = func() (t [8][256]uint32) {
	t[0] = *crc32.IEEETable
	for i := range 256 {
		crc := t[0][i]
		for j := 1; j < 8; j++ {
			crc = t[0][crc&0xff] ^ crc>>8
			t[j][i] = crc
		}
	}
	return t
}()
