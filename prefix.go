package tokenstore

import (
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// metaPrefix records, in the meta bucket, the token prefix the file's
// tokens carry (without the underscore): a store of another prefix would
// refuse every token in it as malformed, and issue tokens of a second
// format into the same file.
var metaPrefix = []byte("prefix")

// settlePrefix decides the store's token format from Options.Prefix
// (want, "" for none) and the prefix the file records:
//   - the file records one: want must be "" or the same, else
//     ErrPrefixMismatch;
//   - it records none (a new file, or one written before the prefix was
//     recorded): want, or DefaultPrefix, is used and, unless the store is
//     ReadOnly, recorded.
func (db *DB) settlePrefix(want string) error {
	var have string
	if err := view(db.bolt, func(tx *bolt.Tx) error {
		have = string(tx.Bucket(bucketMeta).Get(metaPrefix))
		return nil
	}); err != nil {
		return err
	}
	if have != "" {
		f, err := NewFormat(have)
		if err != nil {
			return fmt.Errorf("%w: the meta bucket records an invalid token prefix: %v", ErrCorrupt, err)
		}
		if want != "" && want != have {
			return &PrefixMismatchError{Recorded: have, Given: want}
		}
		db.format = f
		return nil
	}
	f, err := NewFormat(want)
	if err != nil {
		return err
	}
	db.format = f
	if db.ro {
		return nil
	}
	return db.commit.update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(metaPrefix, []byte(f.Prefix()))
	})
}

// PrefixMismatchError is the error of [Open] when Options.Prefix differs
// from the token prefix the file records. It matches [ErrPrefixMismatch]
// (errors.Is); errors.As gives a program, or the tokenstore command, the
// file's prefix without reading the message.
type PrefixMismatchError struct {
	Recorded string // the file's prefix, without the underscore
	Given    string // Options.Prefix
}

func (e *PrefixMismatchError) Error() string {
	return fmt.Sprintf("%v: the file's tokens start with %q, Options.Prefix is %q (set it to %q, or leave it empty to use the file's)",
		ErrPrefixMismatch, e.Recorded+"_", e.Given, e.Recorded)
}

// Unwrap returns ErrPrefixMismatch.
func (e *PrefixMismatchError) Unwrap() error { return ErrPrefixMismatch }

// Prefix returns the prefix of the store's tokens, without the
// underscore: the one the file records (see Options.Prefix).
func (db *DB) Prefix() string { return db.format.Prefix() }
