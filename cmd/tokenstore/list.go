package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tokenstore/tokenstore"
)

func newListCmd(a *app) *cobra.Command {
	var (
		subject     string
		all, asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "list [--subject S] [--all]",
		Short: "List tokens: ID, family, subject, created, last used, expires, policy, metadata (read-only)",
		Long: `List live tokens, oldest first, as a table or (--json) as JSON lines.
Never the tokens themselves: use an ID with inspect --id or revoke --id.
With --url, a subject's live tokens from the running application.

Without --subject every token in the file is listed, streamed 256 at a
time, so a file of a million tokens needs no million-row memory and the
application's writes never wait on a slow reader of the output.
--all adds tokens that have expired but not been swept yet (with --subject
that scans the whole file).`,
		Example: `  tokenstore list --subject alice
  tokenstore list --json | jq -r 'select(.scopes | index("admin")) | .id'`,
		Args:        noArgs,
		Annotations: remoteOK,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if a.remote() && !cmd.Flags().Changed("subject") {
				return usagef("with --url, list needs --subject: the admin API lists one subject's tokens (expiring --within D lists across subjects)")
			}
			if a.remote() && all {
				return usagef("with --url, list shows live tokens only: --all needs the file (--db)")
			}
			if cmd.Flags().Changed("subject") {
				if err := checkSubject(subject); err != nil {
					return err
				}
			}
			return a.list(cmd.Context(), cmd.Flags().Changed("subject"), subject, all, asJSON)
		},
	}
	cmd.Flags().StringVar(&subject, "subject", "", "only this subject's tokens")
	cmd.Flags().BoolVar(&all, "all", false, "include expired tokens not swept yet")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object per token")
	return cmd
}

// listChunk is how many table rows are aligned and written at a time.
const listChunk = 1000

func (a *app) list(ctx context.Context, bySubject bool, subject string, all, asJSON bool) (err error) {
	st, err := a.openStore(openRead)
	if err != nil {
		return err
	}
	defer closeStore(st, &err)
	now := a.now()
	out := newListWriter(a.stdout, now, asJSON)
	var walkErr error
	if bySubject && !all {
		// The subjects index: only this subject's records are read.
		infos, err := st.List(ctx, subject)
		if err != nil && !errors.Is(err, tokenstore.ErrCorrupt) {
			return err
		}
		walkErr = err // damaged records: the others are in infos
		for _, info := range infos {
			if err := out.write(info); err != nil {
				return err
			}
		}
	} else {
		db := st.(fileStore) // the RunE refuses these with --url
		walkErr = db.ForEach(ctx, func(info tokenstore.Info) error {
			if bySubject && info.Subject != subject || !all && !now.Before(info.ExpiresAt) {
				return nil
			}
			return out.write(info)
		})
	}
	// What was written is printed even when the walk failed: a damaged
	// record costs only itself, and is named by the error after the rows.
	if err := out.flush(); err != nil {
		return err
	}
	if walkErr != nil {
		return walkErr
	}
	if out.rows == 0 && !asJSON {
		what := "no live tokens"
		if all {
			what = "no tokens"
		}
		if bySubject {
			what += fmt.Sprintf(" for subject %q", subject)
		}
		fmt.Fprintln(a.stderr, what)
	}
	return nil
}

// listWriter writes list's rows: JSON lines, or a table aligned a chunk at
// a time so that memory stays bounded however many rows there are.
type listWriter struct {
	w      *bufio.Writer
	tw     *tabwriter.Writer
	now    time.Time
	asJSON bool
	rows   int
}

func newListWriter(w io.Writer, now time.Time, asJSON bool) *listWriter {
	bw := bufio.NewWriter(w)
	return &listWriter{w: bw, tw: tabwriter.NewWriter(bw, 0, 0, 2, ' ', 0), now: now, asJSON: asJSON}
}

func (l *listWriter) write(info tokenstore.Info) error {
	if l.asJSON {
		l.rows++
		return writeJSON(l.w, newInfoJSON(info, l.now))
	}
	if l.rows == 0 {
		fmt.Fprintln(l.tw, "ID\tFAMILY\tSUBJECT\tCREATED\tLAST USED\tEXPIRES\tPOLICY\tMETADATA")
	}
	used := "never"
	if t, ok := lastUsed(info); ok {
		used = formatTime(t)
	}
	expires := formatTime(info.ExpiresAt)
	if !l.now.Before(info.ExpiresAt) {
		expires += " (expired)"
	}
	fmt.Fprintf(l.tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", info.ID, info.FamilyID, quoteIfNeeded(info.Subject),
		formatTime(info.CreatedAt), used, expires, formatPolicy(info.Policy), formatMetadata(info.Metadata))
	l.rows++
	if l.rows%listChunk == 0 {
		return l.tw.Flush()
	}
	return nil
}

func (l *listWriter) flush() error {
	if !l.asJSON {
		if err := l.tw.Flush(); err != nil {
			return err
		}
	}
	return l.w.Flush()
}
