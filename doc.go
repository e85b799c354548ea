// Package tokenstore is an embedded, single-file store of opaque bearer
// tokens for Go programs, on bbolt: what Django REST Framework's
// TokenAuthentication gives a Django app, plus expiry.
//
// # Basics
//
// [Open] a file, [DB.Issue] a token to a subject (a user ID), hand the token
// to the client once, and [DB.Validate] it on every request. Tokens expire by
// an [Absolute] or a [Sliding] policy; a background sweeper deletes them.
// Each token has a non-secret ID (a UUIDv7) to list, inspect and revoke it
// without holding the token.
//
//	db, err := tokenstore.Open("tokens.db", nil)
//	...
//	token, info, err := db.Issue(ctx, "user-42")
//	...
//	info, err = db.Validate(ctx, token) // on each request
//
// # What is stored
//
// Never a token: records are keyed by the SHA-256 of the token, so a copy of
// the file, a backup or a log of it grants nothing. Tokens are
// "<prefix>_<body>" with 256 random bits and a CRC32 checksum: a mistyped or
// foreign token is refused as [ErrMalformed] without reading the file.
// Errors and logs never contain a token.
//
// # Guarantees
//
// Durability: Issue, IssueBatch, Revoke, RevokeID, RevokeSubject and Rotate
// return after their bbolt transaction is fsync'd; concurrent callers share
// one transaction (group commit). Revocation is immediate: once Revoke
// returns, Validate refuses the token.
//
// Sliding expiry without a write per request: Validate reads, and keeps the
// use in memory. A use reaches the file in the background (every half
// TouchInterval, in batches) and on [DB.Close]; a Validate writes at once,
// before returning, only when the token's stored last use is TouchInterval
// or more behind. So after a crash a sliding token has lost at most
// TouchInterval of sliding: it may expire up to TouchInterval earlier than
// it would have, never later (it fails closed). A restart never extends a
// lifetime: deadlines are absolute Unix milliseconds.
//
// Damage: a damaged file is refused by Open or costs the method that
// meets the damage an [ErrCorrupt] — never a panic, a hang or a revoked
// token accepted. [DB.Check] finds it.
//
// Concurrency: a [*DB] is safe for simultaneous use by many goroutines. One
// process at a time opens a file for writing; another gets [ErrLocked] after
// Options.LockTimeout.
//
// # Caveats
//
// bbolt transactions cannot be cancelled: a context is checked before each
// transaction starts (and between sweep chunks), not during one. A file
// does not shrink when tokens are deleted; the tokenstore command's compact
// rewrites it.
//
// bbolt's freelist is written at Close, not on every commit (it made each
// Issue on a large, churned file ten times slower). So the first Open after
// a crash, and a write transaction that fails and rolls back, walk the
// whole file to rebuild it: about half a second at a million tokens.
//
// The store trusts the clock: a clock set back by D lets tokens live up to
// D longer in real time (last uses never move back).
//
// A Validate whose write of a last use fails (a full disk) still succeeds;
// the use stays in memory for the background writer.
package tokenstore
