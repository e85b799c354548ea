package tokenstore

import (
	"errors"
	"fmt"
	"runtime/debug"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// boltErr turns bbolt's errors into tokenstore's.
func boltErr(err error) error {
	switch {
	case errors.Is(err, berrors.ErrDatabaseNotOpen), errors.Is(err, berrors.ErrTxClosed):
		return ErrClosed
	case errors.Is(err, berrors.ErrDatabaseReadOnly):
		return ErrReadOnly
	case errors.Is(err, berrors.ErrIncompatibleValue):
		// The store makes no nested bucket and no key at the top: a
		// bucket where a value should be, or a value where a bucket
		// should be, is damage (a flag bit flipped).
		return fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	return err
}

// view runs a read transaction. bbolt panics on some damaged pages, and a
// damaged page pointer makes it read outside its mapping (a fault, which
// SetPanicOnFault makes a panic in this goroutine); view turns both into
// ErrCorrupt (bbolt ends the transaction as the panic unwinds), so a
// damaged file costs the caller an error, never the process. Writes go
// through [committer.update], which does the same.
func view(b *bolt.DB, fn func(*bolt.Tx) error) (err error) {
	defer recoverCorrupt(&err)
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	return b.View(fn)
}

// recoverCorrupt, deferred, turns a panic into an ErrCorrupt in *err.
func recoverCorrupt(err *error) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("%w: bbolt: %v", ErrCorrupt, r)
	}
}
