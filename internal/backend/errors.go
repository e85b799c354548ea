package backend

import "strings"

// OpError names the operation an error came from, and the package, once:
// "redisstore: validate: token has expired" for tokenstore.ErrExpired,
// whose own text starts "tokenstore: ". It unwraps to the error it holds,
// so errors.Is sees the sentinel.
type OpError struct {
	Pkg string // "tokenstore", "redisstore"
	Op  string // "validate", "revoke <id>"
	Err error
}

// Error returns "Pkg: Op: text of Err" with Err's own package prefix, if
// any, removed, so that no message repeats a package name. An empty Op
// adds only the prefix, for an error that names its operation itself (an
// *fs.PathError: "open x: permission denied").
func (e *OpError) Error() string {
	if e.Op == "" {
		return e.Pkg + ": " + trimPkg(e.Err.Error())
	}
	return e.Pkg + ": " + e.Op + ": " + trimPkg(e.Err.Error())
}

func (e *OpError) Unwrap() error { return e.Err }

// prefixes are the package prefixes an inner error's text may start with.
var prefixes = []string{"tokenstore: ", "redisstore: "}

func trimPkg(s string) string {
	for _, p := range prefixes {
		if t, ok := strings.CutPrefix(s, p); ok {
			return t
		}
	}
	return s
}

// Wrap returns err as an *OpError of pkg and op, or nil for a nil err.
func Wrap(pkg, op string, err error) error {
	if err == nil {
		return nil
	}
	return &OpError{Pkg: pkg, Op: op, Err: err}
}
