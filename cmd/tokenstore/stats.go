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
		Policies map[string]int `json:"policies"` // by Policy.String
	} `json:"tokens"`
	Bolt struct {
		PageSize  int          `json:"page_size"`
		Pages     int          `json:"pages"`
		FreePages int          `json:"free_pages"`
		Buckets   []bucketJSON `json:"buckets"`
	} `json:"bbolt"`
}

type bucketJSON struct {
	Name  string `json:"name"`
	Keys  int    `json:"keys"`
	Depth int    `json:"depth"`
	Pages int    `json:"pages"`
	InUse int    `json:"bytes_in_use"`
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
		s.Bolt.Buckets = append(s.Bolt.Buckets, bucketJSON(b))
	}
	s.Tokens.Policies = map[string]int{}
	policies := map[string]tokenstore.Policy{}
	now := a.now()
	err = db.ForEach(ctx, func(info tokenstore.Info) error {
		s.Tokens.Total++
		if now.Before(info.ExpiresAt) {
			s.Tokens.Live++
		} else {
			s.Tokens.Expired++
		}
		key := info.Policy.String()
		s.Tokens.Policies[key]++
		policies[key] = info.Policy
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
		fmt.Fprintf(tw, "  %s\t%d\n", formatPolicy(policies[k]), s.Tokens.Policies[k])
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
	for _, b := range fi.Buckets {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\n", b.Name, b.Keys, b.Depth, b.Pages, b.InUse)
	}
	return tw.Flush()
}
