package tokenshape_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tokenstore/tokenstore"
	"github.com/tokenstore/tokenstore/internal/tokenshape"
)

func TestIsToken(t *testing.T) {
	for _, prefix := range []string{"tks", "acme2"} {
		f, err := tokenstore.NewFormat(prefix)
		require.NoError(t, err)
		tok, _ := f.Generate()
		assert.True(t, tokenshape.IsToken(tok), prefix)
		last := tok[len(tok)-1]
		typo := tok[:len(tok)-1] + string(map[bool]byte{true: 'A', false: 'B'}[last != 'A'])
		assert.False(t, tokenshape.IsToken(typo), "a typo fails the checksum")
	}
	// A token issued before tokens carried their issue time (the schema-1
	// fixture's first) is a token too, and a typo in it is not.
	const old = "tks_pGidZimU3aU0AxhM0GoUNQybgUKRabm614jJtyFdDU73dRrIe"
	assert.True(t, tokenshape.IsToken(old), "an old-format token")
	for i := len("tks_"); i < len(old); i++ {
		typo := []byte(old)
		typo[i] = map[bool]byte{true: 'x', false: 'y'}[old[i] != 'x']
		assert.False(t, tokenshape.IsToken(string(typo)), "a typo at %d", i)
	}
	for _, s := range []string{"", "alice", "_abc", "tks_", "Tks_abc", "alice_smith", "user@example.com"} {
		assert.False(t, tokenshape.IsToken(s), s)
	}
}
