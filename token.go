package tokenstore

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"hash/crc32"
)

// A token is "<prefix>_<body>". The body is randomLen base62 characters
// from crypto/rand (43 × log2(62) ≈ 256.03 bits) followed by checksumLen
// base62 characters of the CRC32 of everything before them, as GitHub's
// tokens do: a typo, a truncation or a token of another system is refused
// offline, and secret scanners can match the shape.
const (
	randomLen   = 43
	checksumLen = 6 // 62^6 > 2^32
	bodyLen     = randomLen + checksumLen

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

// Hash is the SHA-256 of a token: the only form in which a token is
// stored, so a copy of the file grants nothing.
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

// Generate returns a new random token and its hash.
func (f Format) Generate() (string, Hash) {
	var rnd [64]byte
	return f.render(func() []byte {
		_, _ = rand.Read(rnd[:]) // crypto/rand.Read never fails since Go 1.24; it crashes the program instead
		return rnd[:]
	})
}

// Derive returns the token of this format that key derives from token,
// and its hash: its random part is drawn from HMAC-SHA256(key, token) in
// counter mode, so the same key and token always give the same token, and
// only a holder of token (and of key) can compute it. Rotate with a grace
// uses it (RotateParams.Grace): the store keeps only hashes, yet a client
// that lost Rotate's answer and rotates again gets the same successor.
// key must be a secret of at least 32 random bytes that the store keeps.
func (f Format) Derive(key []byte, token string) (string, Hash) {
	mac := hmac.New(sha256.New, key)
	var sum []byte
	ctr := byte(0)
	return f.render(func() []byte {
		mac.Reset()
		mac.Write([]byte("tokenstore successor\x00"))
		mac.Write([]byte{ctr})
		mac.Write([]byte(token))
		ctr++
		sum = mac.Sum(sum[:0])
		return sum
	})
}

// render builds a token from the bytes next returns, taking each byte
// below 248 (4 × 62, so that every digit is equally likely) as a base62
// digit until randomLen are taken, then the checksum.
func (f Format) render(next func() []byte) (string, Hash) {
	var buf [MaxPrefixLen + 1 + bodyLen]byte
	n := copy(buf[:], f.prefix)
	buf[n] = '_'
	n++
	for filled := 0; filled < randomLen; {
		for _, b := range next() {
			if b < 248 && filled < randomLen {
				buf[n+filled] = base62[b%62]
				filled++
			}
		}
	}
	n += randomLen
	putChecksum(buf[n:n+checksumLen], crc32.ChecksumIEEE(buf[:n]))
	n += checksumLen
	return string(buf[:n]), sha256.Sum256(buf[:n])
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
// Every failure is [ErrMalformed], and its text never repeats the token.
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
	var want [checksumLen]byte
	putChecksum(want[:], crc32String(token[:n-checksumLen]))
	if string(want[:]) != string(buf[n-checksumLen:n]) {
		return Hash{}, fmt.Errorf("%w: checksum mismatch (mistyped or truncated?)", ErrMalformed)
	}
	return sha256.Sum256(buf[:n]), nil
}

// crc32String is crc32.ChecksumIEEE of s. Parse uses it on the token
// itself: handing a stack buffer to hash/crc32, whose implementation is
// chosen at run time, moves the buffer to the heap (one allocation per
// Validate). Byte at a time it is faster than that for a token's length
// (94 ns against 138 ns with the allocation, on the benchmark machine).
func crc32String(s string) uint32 {
	crc := ^uint32(0)
	for i := 0; i < len(s); i++ {
		crc = crc32.IEEETable[byte(crc)^s[i]] ^ crc>>8
	}
	return ^crc
}
