package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/tokenstore/tokenstore"
	"golang.org/x/term"
)

// maxTokenInput bounds what is read from stdin for one token.
const maxTokenInput = 4096

// readToken returns the token on the first line of stdin; args may be
// empty or "-". On a terminal it is read without echo.
//
// A token is never taken as an argument: argv is what ps shows every user
// of the machine, and the shell keeps it in its history. The argument
// given instead is refused without being repeated (it may be a token).
func (a *app) readToken(args []string) (string, error) {
	if len(args) == 1 && args[0] != "-" {
		return "", usagef("a token is read from stdin, never from an argument (ps shows every user of the machine the arguments, and the shell keeps them in its history): printf '%%s\\n' \"$T\" | tokenstore <command> -, or type it at the prompt")
	}
	var line string
	if f, ok := a.stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(a.stderr, "token (not echoed): ")
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(a.stderr)
		if err != nil {
			return "", fmt.Errorf("reading the token from the terminal: %w", err)
		}
		line = string(b)
	} else {
		r := bufio.NewReader(io.LimitReader(a.stdin, maxTokenInput))
		var err error
		line, err = r.ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return "", fmt.Errorf("reading the token from stdin: %w", err)
		}
	}
	tok := strings.TrimSpace(line)
	if tok == "" {
		// Nothing to act on: the command was called wrongly (exit 2), as
		// with a missing argument.
		return "", usagef("no token given: write it on the first line of stdin")
	}
	return tok, nil
}

// tokenError explains why a token was refused, never repeating it.
func (a *app) tokenError(err error, token string) error {
	var msg string
	switch {
	case errors.Is(err, tokenstore.ErrMalformed):
		msg = "invalid token: malformed" + strings.TrimPrefix(err.Error(), tokenstore.ErrMalformed.Error())
		if !a.remote() && a.prefix != "" && !strings.HasPrefix(token, a.prefix+"_") {
			msg += fmt.Sprintf("; this file's tokens start with %q", a.prefix+"_")
		}
	case errors.Is(err, tokenstore.ErrNotFound):
		msg = "invalid token: not found (never issued, revoked, or expired and swept)"
	case errors.Is(err, tokenstore.ErrExpired):
		msg = "invalid token: expired"
	case errors.Is(err, tokenstore.ErrReused) && a.readOnly && !a.remote():
		// The library revokes nothing on a read-only store.
		msg = "invalid token: reused: it was rotated away and is presented again after its grace, so one of two holders has a stolen copy; the file was opened read-only, so its family is not revoked yet: the application revokes it when the token reaches it, revoke --family ID does it now (list shows the family)"
	case errors.Is(err, tokenstore.ErrReused):
		msg = "invalid token: reused: it was rotated away and presented again after its grace, so one of two holders has a stolen copy; every token of its family is now revoked, and its holder must authenticate again"
	default:
		return err
	}
	return &explained{msg, err}
}
