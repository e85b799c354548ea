package main

import (
	"context"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/tokenstore/tokenstore"
)

// store is what the commands that also run against a running application
// (--url) need. A token file gives it through fileStore (a *tokenstore.DB),
// the application's admin API through remoteStore (an admin.Client): the
// same Info values and the same sentinel errors, so that each command is
// written once and prints the same output and exit code either way.
type store interface {
	List(ctx context.Context, subject string) ([]tokenstore.Info, error)
	Get(ctx context.Context, id uuid.UUID) (tokenstore.Info, error)
	Lookup(ctx context.Context, token string) (tokenstore.Info, error)
	Revoke(ctx context.Context, token string) error
	RevokeID(ctx context.Context, id uuid.UUID) error
	RevokeSubject(ctx context.Context, subject string) (int, error)
	RevokeFamily(ctx context.Context, familyID uuid.UUID) (int, error)
	Issue(ctx context.Context, subject string, opts ...tokenstore.IssueOption) (string, tokenstore.Info, error)
	// Expiring returns the live tokens whose deadline falls within d from
	// now, soonest first.
	Expiring(ctx context.Context, d time.Duration) ([]tokenstore.Info, error)
	// Stats counts the tokens and describes the file, as stats prints it.
	Stats(ctx context.Context) (statsJSON, error)
	Close() error
}

// openStore opens what the command runs on: the application at --url, or
// the token file (--db) with mode.
func (a *app) openStore(mode openMode) (store, error) {
	if a.remote() {
		return a.openRemote()
	}
	db, err := a.open(mode)
	if err != nil {
		return nil, err
	}
	return fileStore{db, a.now}, nil
}

// closeStore closes s, reporting its error into *err unless one is there.
func closeStore(s store, err *error) {
	if cerr := s.Close(); cerr != nil && *err == nil {
		*err = cerr
	}
}

// fileStore is a token file: a *tokenstore.DB, plus what the commands
// compute from a walk of its tokens.
type fileStore struct {
	*tokenstore.DB
	now func() time.Time
}

func (s fileStore) Expiring(ctx context.Context, d time.Duration) ([]tokenstore.Info, error) {
	now := s.now()
	until := now.Add(d)
	var infos []tokenstore.Info
	err := s.ForEach(ctx, func(info tokenstore.Info) error {
		if now.Before(info.ExpiresAt) && !info.ExpiresAt.After(until) {
			infos = append(infos, info)
		}
		return nil
	})
	slices.SortStableFunc(infos, func(a, b tokenstore.Info) int { return a.ExpiresAt.Compare(b.ExpiresAt) })
	return infos, err
}

func (s fileStore) Stats(ctx context.Context) (statsJSON, error) {
	var st statsJSON
	fi, err := s.FileInfo(ctx)
	if err != nil {
		return st, err
	}
	st.File, st.Size = fi.Path, fi.Size
	st.Bolt = &boltJSON{PageSize: fi.PageSize, Pages: fi.Pages, FreePages: fi.FreePages}
	for _, b := range fi.Buckets {
		st.Bolt.Buckets = append(st.Bolt.Buckets, newBucketJSON(b))
	}
	var live, expired int
	st.Tokens.Policies = map[string]int{}
	now := s.now()
	err = s.ForEach(ctx, func(info tokenstore.Info) error {
		if now.Before(info.ExpiresAt) {
			live++
		} else {
			expired++
		}
		st.Tokens.Policies[formatPolicy(info.Policy)]++
		return nil
	})
	st.Tokens.Total, st.Tokens.Live, st.Tokens.Expired = live+expired, &live, &expired
	return st, err
}
