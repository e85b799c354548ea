// Command tokenstore administers a tokenstore token file from the shell:
// issue, validate, inspect, list and revoke tokens, sweep expired ones, and
// check, back up and compact the file. Run "tokenstore --help".
package main

import (
	"context"
	"os"
	"syscall"
)

func main() {
	// SIGHUP too (the terminal or ssh session closed): a command stops as
	// on SIGINT, removing what it was writing (a backup's temporary copy),
	// where the signal's default action would kill it and leave the copy.
	// The context's cause names the signal, for the error message.
	ctx, stop := onSignals(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
