package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/tokenstore/tokenstore"
	"github.com/tokenstore/tokenstore/admin"
)

func newStatsCmd(a *app) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "stats",
		Short: "Count tokens (live, expired, per policy) and show the file's size and bbolt pages (read-only)",
		Long: `Count the file's tokens: live, expired but not swept yet, and per policy;
and show its size, its bbolt pages (free ones are reused by later writes;
compact returns them to the filesystem) and each bucket's keys and pages.
It reads every record once, from a read-only open.

With --url, the running application's figures: the same, without bbolt's
on a store that is no file (Redis), and with its counters since it opened
the store (issued, validated, rejected, ...).`,
		Example:     `  tokenstore stats --json | jq .tokens`,
		Args:        noArgs,
		Annotations: remoteOK,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.stats(cmd.Context(), asJSON)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the figures as one JSON object")
	return cmd
}

// statsJSON is stats' --json output. With --url it says what the
// application's admin API gives: url and counters are added, live and
// expired are absent for a store that cannot walk its tokens, and file,
// size and bbolt for a store that is no file (Redis).
type statsJSON struct {
	URL    string `json:"url,omitempty"` // --url
	File   string `json:"file,omitempty"`
	Size   int64  `json:"size,omitempty"`
	Tokens struct {
		Total    int            `json:"total"`
		Live     *int           `json:"live,omitempty"`
		Expired  *int           `json:"expired,omitempty"`
		Policies map[string]int `json:"policies"` // by policy, as the text writes it
	} `json:"tokens"`
	Bolt *boltJSON `json:"bbolt,omitempty"`
	// Counters are the application's tokenstore.Stats since it opened the
	// store (--url only: a command's own store has counted nothing).
	Counters *admin.Counters `json:"counters,omitempty"`
	// Damaged is the error naming the records that could not be read, as
	// stderr has it: the figures count every other record, and the
	// command exits 1.
	Damaged string `json:"damaged,omitempty"`
}

// boltJSON describes the bbolt file's pages and buckets.
type boltJSON struct {
	PageSize  int          `json:"page_size"`
	Pages     int          `json:"pages"`
	FreePages int          `json:"free_pages"`
	Buckets   []bucketJSON `json:"buckets"`
}

// bucketJSON describes a bucket. A bucket small enough is stored inline,
// inside its parent's page, by bbolt: it has no pages of its own, and the
// bytes it takes in the parent's page are not counted (bytes_in_use null).
type bucketJSON struct {
	Name   string `json:"name"`
	Keys   int    `json:"keys"`
	Depth  int    `json:"depth"`
	Inline bool   `json:"inline"`
	Pages  int    `json:"pages"`
	InUse  *int   `json:"bytes_in_use"`
}

func newBucketJSON(b tokenstore.BucketInfo) bucketJSON {
	j := bucketJSON{Name: b.Name, Keys: b.Keys, Depth: b.Depth, Pages: b.Pages}
	// Every bucket with its own root has at least one page: no pages
	// means bbolt inlined it.
	if j.Inline = b.Pages == 0; !j.Inline {
		j.InUse = &b.InUse
	}
	return j
}

func (a *app) stats(ctx context.Context, asJSON bool) (err error) {
	st, err := a.openStore(openRead)
	if err != nil {
		return err
	}
	defer closeStore(st, &err)
	s, err := st.Stats(ctx)
	var walkErr error // damaged records: the figures count every other one
	switch {
	case errors.Is(err, tokenstore.ErrCorrupt) && s.Tokens.Live != nil:
		walkErr, s.Damaged = err, errorText(ctx, err)
	case err != nil:
		return err
	}
	if asJSON {
		if err := writeJSON(a.stdout, s); err != nil || walkErr == nil {
			return err
		}
		return &shownError{walkErr} // the object says "damaged"
	}
	defer func() {
		if err == nil {
			err = walkErr
		}
	}()

	tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
	if s.URL != "" {
		fmt.Fprintf(tw, "url\t%s\n", s.URL)
	}
	if s.File != "" {
		fmt.Fprintf(tw, "file\t%s\n", s.File)
		fmt.Fprintf(tw, "size\t%s (%d bytes)\n", formatBytes(s.Size), s.Size)
	}
	fmt.Fprintf(tw, "tokens\t%d\n", s.Tokens.Total)
	if s.Tokens.Live != nil {
		fmt.Fprintf(tw, "  live\t%d\n", *s.Tokens.Live)
	}
	switch {
	case s.Tokens.Expired == nil:
	case *s.Tokens.Expired > 0 && s.URL != "":
		fmt.Fprintf(tw, "  expired\t%d (not swept yet: the application's sweeper deletes them)\n", *s.Tokens.Expired)
	case *s.Tokens.Expired > 0:
		fmt.Fprintf(tw, "  expired\t%d (not swept yet: tokenstore sweep deletes them)\n", *s.Tokens.Expired)
	default:
		fmt.Fprintf(tw, "  expired\t0\n")
	}
	// Most used policy first, then by name.
	keys := slices.SortedFunc(maps.Keys(s.Tokens.Policies), func(x, y string) int {
		if c := s.Tokens.Policies[y] - s.Tokens.Policies[x]; c != 0 {
			return c
		}
		return cmp.Compare(x, y)
	})
	for _, k := range keys {
		fmt.Fprintf(tw, "  %s\t%d\n", k, s.Tokens.Policies[k])
	}
	if b := s.Bolt; b != nil {
		free := int64(b.FreePages) * int64(b.PageSize)
		fmt.Fprintf(tw, "bbolt pages\t%d of %d bytes, %d free (%s", b.Pages, b.PageSize, b.FreePages, formatBytes(free))
		if b.FreePages > 0 {
			fmt.Fprintf(tw, ": reused by later writes; tokenstore compact returns them")
		}
		fmt.Fprintf(tw, ")\n")
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if c := s.Counters; c != nil {
		fmt.Fprintln(a.stdout)
		tw = tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintf(tw, "since the application opened the store\t\n")
		for _, row := range []struct {
			name string
			n    uint64
		}{
			{"issued", c.Issued}, {"validated", c.Validated}, {"looked up", c.Lookups}, {"revoked", c.Revoked}, {"swept", c.Swept},
			{"rejected: malformed", c.RejectedMalformed}, {"rejected: not found", c.RejectedNotFound}, {"rejected: expired", c.RejectedExpired},
			{"rejected: reused (family revoked)", c.RejectedReused},
			{"last uses written", c.TouchesPersisted}, {"cache hits", c.CacheHits}, {"cache misses", c.CacheMisses},
		} {
			fmt.Fprintf(tw, "  %s\t%d\n", row.name, row.n)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if s.Bolt == nil {
		return nil
	}

	fmt.Fprintln(a.stdout)
	tw = tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "bucket\tkeys\tdepth\tpages\tbytes in use\n")
	inline := false
	for _, b := range s.Bolt.Buckets {
		if b.Inline {
			inline = true
			fmt.Fprintf(tw, "%s\t%d\t%d\tinline\t-\n", b.Name, b.Keys, b.Depth)
			continue
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\n", b.Name, b.Keys, b.Depth, b.Pages, *b.InUse)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if inline {
		_, err = fmt.Fprintln(a.stdout, "inline: small enough for bbolt to keep inside its parent's page, so it has no pages of its own")
	}
	return err
}
