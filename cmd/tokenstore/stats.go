package main

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/tokenstore/tokenstore"
)

func newStatsCmd(a *app) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "stats",
		Short: "Count tokens (live, expired, per policy) and show the file's size and bbolt pages (read-only)",
		Long: `Count the file's tokens: live, expired but not swept yet, and per policy;
and show its size, its bbolt pages (free ones are reused by later writes;
compact returns them to the filesystem) and each bucket's keys and pages.
It reads every record once, from a read-only open.`,
		Example: `  tokenstore stats --json | jq .tokens`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.stats(cmd.Context(), asJSON)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the figures as one JSON object")
	return cmd
}

// statsJSON is stats' --json output.
type statsJSON struct {
	File   string `json:"file"`
	Size   int64  `json:"size"`
	Tokens struct {
		Total    int            `json:"total"`
		Live     int            `json:"live"`
		Expired  int            `json:"expired"`
		Policies map[string]int `json:"policies"` // by policy, as the text writes it
	} `json:"tokens"`
	Bolt struct {
		PageSize  int          `json:"page_size"`
		Pages     int          `json:"pages"`
		FreePages int          `json:"free_pages"`
		Buckets   []bucketJSON `json:"buckets"`
	} `json:"bbolt"`
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
	db, err := a.open(openRead)
	if err != nil {
		return err
	}
	defer closeDB(db, &err)
	fi, err := db.FileInfo(ctx)
	if err != nil {
		return err
	}
	var s statsJSON
	s.File, s.Size = fi.Path, fi.Size
	s.Bolt.PageSize, s.Bolt.Pages, s.Bolt.FreePages = fi.PageSize, fi.Pages, fi.FreePages
	for _, b := range fi.Buckets {
		s.Bolt.Buckets = append(s.Bolt.Buckets, newBucketJSON(b))
	}
	s.Tokens.Policies = map[string]int{}
	now := a.now()
	err = db.ForEach(ctx, func(info tokenstore.Info) error {
		s.Tokens.Total++
		if now.Before(info.ExpiresAt) {
			s.Tokens.Live++
		} else {
			s.Tokens.Expired++
		}
		s.Tokens.Policies[formatPolicy(info.Policy)]++
		return nil
	})
	if err != nil {
		return err
	}
	if asJSON {
		return writeJSON(a.stdout, s)
	}

	tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "file\t%s\n", s.File)
	fmt.Fprintf(tw, "size\t%s (%d bytes)\n", formatBytes(s.Size), s.Size)
	fmt.Fprintf(tw, "tokens\t%d\n", s.Tokens.Total)
	fmt.Fprintf(tw, "  live\t%d\n", s.Tokens.Live)
	if s.Tokens.Expired > 0 {
		fmt.Fprintf(tw, "  expired\t%d (not swept yet: tokenstore sweep deletes them)\n", s.Tokens.Expired)
	} else {
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
	free := int64(fi.FreePages) * int64(fi.PageSize)
	fmt.Fprintf(tw, "bbolt pages\t%d of %d bytes, %d free (%s", fi.Pages, fi.PageSize, fi.FreePages, formatBytes(free))
	if fi.FreePages > 0 {
		fmt.Fprintf(tw, ": reused by later writes; tokenstore compact returns them")
	}
	fmt.Fprintf(tw, ")\n")
	if err := tw.Flush(); err != nil {
		return err
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
