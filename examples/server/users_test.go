package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestLoadUsers_RefusesWhatCannotLogIn: a users file whose password is not
// a hash-password output (a plain password is the natural first mistake)
// or that names a user twice loaded, and every login of that user then
// failed with invalid_grant and nothing in the log. It fails at start,
// naming the user and not repeating the password.
func TestLoadUsers_RefusesWhatCannotLogIn(t *testing.T) {
	var hash bytes.Buffer
	require.NoError(t, hashPassword(strings.NewReader("s3cret\n"), &hash))
	good := strings.TrimSpace(hash.String())
	tests := map[string]struct {
		file, want string
	}{
		"plain password": {`[{"username":"alice","password":"s3cret"}]`, `user "alice": password`},
		"hex not hex":    {`[{"username":"alice","password":"pbkdf2-sha256$zz$zz"}]`, `user "alice": password`},
		"empty password": {`[{"username":"alice","password":""}]`, `user "alice": password`},
		"user twice":     {`[{"username":"alice","password":"` + good + `"},{"username":"alice","password":"` + good + `"}]`, `user "alice" is listed twice`},
		"unknown field":  {`[{"username":"alice","pasword":"` + good + `"}]`, `unknown field`},
	}
	for name, tt := range tests {
		path := filepath.Join(t.TempDir(), "users.json")
		require.NoError(t, os.WriteFile(path, []byte(tt.file), 0o600))
		_, err := loadUsers(path)
		if assert.Error(t, err, name) {
			assert.Contains(t, err.Error(), tt.want, name)
			assert.NotContains(t, err.Error(), "s3cret", name)
		}
	}
	path := filepath.Join(t.TempDir(), "users.json")
	require.NoError(t, os.WriteFile(path, []byte(`[{"username":"alice","password":"`+good+`","scope":"read"}]`), 0o600))
	users, err := loadUsers(path)
	require.NoError(t, err)
	assert.True(t, users["alice"].check("s3cret"))
}

// TestHashPassword_RefusesWhatItWouldTruncate: hash-password read at most
// 1,024 bytes and hashed them, so a longer password (which /login accepts)
// could never log in.
func TestHashPassword_RefusesWhatItWouldTruncate(t *testing.T) {
	var out bytes.Buffer
	err := hashPassword(strings.NewReader(strings.Repeat("p", 1500)), &out)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "longer than")
	assert.Empty(t, out.String())
}
