package main

// Throwaway scaffolding for developing the bench command on the perf
// branch: the cli branch's root.go replaces this file. It has the same
// shape (app, run, a persistent --db flag, exit codes 0/1/2).

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
)

// app is what every command shares: the streams it writes to.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer

	dbPath string // --db (the bench command has its own)
}

// run runs the command line args and returns the process's exit code.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:           "tokenstore",
		Short:         "Administer a tokenstore token file",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetArgs(args)
	usage := false
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { usage = true; return err })
	root.PersistentFlags().StringVar(&a.dbPath, "db", "tokens.db", "the token `file`")
	root.AddCommand(newBenchCmd(a))
	if err := root.ExecuteContext(ctx); err != nil {
		msg := err.Error()
		if errors.Is(err, context.Canceled) && ctx.Err() != nil {
			msg = "interrupted"
		}
		fmt.Fprintln(stderr, "tokenstore: "+strings.TrimPrefix(msg, "tokenstore: "))
		if usage {
			return 2
		}
		return 1
	}
	return 0
}
