// Package tokenshape tells a token of any tokenstore store from other
// text, for the admin handler and the command, which must refuse a token
// pasted where a subject belongs before they know their store's prefix.
package tokenshape

import (
	"strings"

	"github.com/tokenstore/tokenstore"
)

// IsToken reports whether s is a well-formed token of any tokenstore
// store: a valid prefix, an underscore and a body whose checksum matches,
// of either token version (tokenstore.Format.Parse). A subject that merely
// looks alike fails both checksums but for two chances in 2^32.
func IsToken(s string) bool {
	prefix, _, ok := strings.Cut(s, "_")
	if !ok || prefix == "" {
		return false
	}
	f, err := tokenstore.NewFormat(prefix)
	if err != nil {
		return false
	}
	_, err = f.Parse(s)
	return err == nil
}
