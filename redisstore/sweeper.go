package redisstore

import (
	"context"
	"fmt"
	"strconv"
	"strings"
)

// maxNamed bounds the damaged records one sweep's error names.
const maxNamed = 100

// backgroundSweep is the background sweeper's round, every
// Options.SweepInterval; Close cancels ctx, so a long sweep stops between
// chunks.
func (s *Store) backgroundSweep(ctx context.Context) {
	n, err := s.sweep(ctx)
	switch {
	case err != nil && ctx.Err() == nil:
		s.log.Error("redisstore: sweep failed", "deleted", n, "err", err)
	case n > 0:
		s.log.Info("redisstore: swept expired tokens", "deleted", n)
	}
}

// Sweep deletes every token whose deadline has passed, in scripts of at
// most 1,000 tokens so that Redis never stalls long, and returns how many
// it deleted, counting those whose keys Redis had already expired. It
// stops between scripts when ctx is done, returning the count so far and
// ctx's error. Instances may sweep at the same time: each token is deleted
// once. The background sweeper runs the same pass every
// Options.SweepInterval.
//
// Its cost follows the expired tokens, not the store: it walks an index
// ordered by deadline from its start to now.
func (s *Store) Sweep(ctx context.Context) (int, error) {
	if err := s.begin(ctx); err != nil {
		return 0, wrap("sweep", err)
	}
	return s.sweep(ctx)
}

func (s *Store) sweep(ctx context.Context) (int, error) {
	// One now for the whole pass, so that it ends even while tokens keep
	// expiring. With Redis's clock, the first script reads it and says.
	now := s.nowArg()
	total := 0
	skip := 0        // damaged records met in this pass: the script steps over them
	var bad []string // IDs of those met for the first time (reported once), up to maxNamed
	nbad := 0
	for {
		if err := ctx.Err(); err != nil {
			return total, wrap("sweep", err)
		}
		res, err := s.run(ctx, sweepScript, []string{s.expiryKey()}, now, s.prefix, chunk, skip).Slice()
		if err != nil {
			return total, wrap("sweep", err)
		}
		n, seen, err := head(res)
		if err == nil && len(res) >= 3 && now == "" {
			var t int64
			t, err = toInt(res[2])
			now = strconv.FormatInt(t, 10)
		}
		if err != nil {
			return total, wrap("sweep", err)
		}
		if len(res) == 4 {
			ids, _ := res[3].([]any)
			skip += len(ids)
			for _, id := range ids {
				if _, known := s.damaged.LoadOrStore(id, true); !known {
					if nbad++; len(bad) < maxNamed {
						bad = append(bad, fmt.Sprint(id))
					}
				}
			}
		}
		total += int(n)
		s.ctr.swept.Add(uint64(n))
		if seen < chunk {
			if nbad == 0 {
				return total, nil
			}
			more := ""
			if nbad > len(bad) {
				more = fmt.Sprintf(" and %d more", nbad-len(bad))
			}
			return total, wrap("sweep", corrupt("%d damaged records, left as they are: tokens %s%s", nbad, strings.Join(bad, ", "), more))
		}
	}
}
