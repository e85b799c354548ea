package backend

import (
	"context"
	"errors"
	"os"
)

// IsTimeout reports whether err is a store's call not answered in time:
// its own context deadline, or a network timeout (net.Error's Timeout,
// os.ErrDeadlineExceeded). The HTTP middleware, grpcauth and the admin
// handler answer it as unavailable, since a retry may succeed (RFC 7009
// §2.2.1 has the client retry a 503).
func IsTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}
