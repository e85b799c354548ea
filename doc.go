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
// # Refresh tokens: rotation and families
//
// [DB.Rotate] replaces a token by a successor in the same family and
// keeps a tombstone of the old one. The old token presented again after
// its grace (see [WithGrace]) is [ErrReused]: one of two parties holds a
// stolen copy, so the store revokes every token of the family (RFC 9700
// §4.14.2) and the holder must authenticate again. Rotation never extends
// the family's cap: see [Sliding]. [DB.RevokeFamily] revokes a family by
// its ID ([Info].FamilyID).
//
// # What is stored
//
// Never a token: records are keyed by the token's [Hash] (its issue time
// and SHA-256), so a copy of the file, a backup or a log of it grants
// nothing. Tokens are "<prefix>_<body>": the issue time (8 characters of
// Unix ms, so a token reveals when it was issued), 208 random bits and a
// CRC32 checksum: a mistyped or foreign token is refused as [ErrMalformed]
// without reading the file. Errors and logs never contain a token.
//
// # Guarantees
//
// Durability: Issue, IssueBatch, Revoke, RevokeID, RevokeSubject and Rotate
// return after their bbolt transaction is fsync'd; concurrent callers share
// one transaction (group commit). Revocation is immediate: once Revoke
// returns, Validate refuses the token.
//
// Sliding expiry without a write per request: Validate reads, keeps the
// use in memory and returns; under default Options it never waits for a
// disk write, however long the token was idle. The background writer
// writes every use held every TouchInterval/2, in transactions of about
// 6 ms sorted by key, pausing after each as long as it took so that it
// leaves most of the CPU to requests; [DB.Flush] writes them at once the
// same way, and [DB.Close] without the pauses. So a
// crash loses at most the uses made in the last TouchInterval (1 minute by
// default) before it, while each pass ends within TouchInterval/2 (a
// loaded disk stretches the bound by as much; whatever the load, a use is
// in the file once the second pass after it has ended). A lost use can
// only make a token expire earlier than it would have, never later: the
// file keeps an older last use (it fails closed). How much earlier is what
// the lost use would have moved: for a returning user's first use after
// days idle, those days; Options.FsyncReturningUses writes such a use
// before Validate returns, at the cost of an fsync on the request path. A
// restart never extends a lifetime: deadlines are absolute Unix
// milliseconds.
//
// Sweeps and uses: a sweep never deletes a token that a Validate beside it
// answered valid. Each use and the sweep's decision on that token are
// ordered: a use first keeps the token (it is re-filed under its new
// deadline); the sweep's decision first makes the Validate, Lookup,
// Rotate or Get answer [ErrExpired] (and List leave the token out), even
// when its clock read just before the deadline: it is ordered after the
// sweep, whose clock read past it. A sweep cut short (its ctx done, a
// write failed) keeps its decision until a later sweep completes.
//
// Memory: a use not yet written keeps its token's entry in memory until it
// is written, beyond Options.CacheSize: at most one entry (about 240 bytes
// plus its subject and metadata) per token in the file, also while a full
// disk refuses writes for hours. While a sweep reads what is due, the
// entries of tokens first checked meanwhile are kept beyond CacheSize too,
// until later inserts evict them.
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
// A full disk does not fail Validate: uses stay in memory (see Memory
// above) and are written once writes succeed again.
//
// A file written by an older version (schema 1) is upgraded by the first
// Open that is not ReadOnly, in one transaction: a crash during it leaves
// the old file, upgraded again by the next Open. A file written before
// token families gains their buckets at its first writable Open, without
// a record rewritten; a build of that time reads a rotated token's record
// as damaged (ErrCorrupt), never as another token.
//
// A grace ends at the successor's first use, which reaches the file
// within TouchInterval like any use: a crash before that can reopen the
// grace until its end (at most [MaxGrace] after the rotation).
package tokenstore
