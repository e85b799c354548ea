// Command tokenstore administers a tokenstore token file from the shell:
// issue, validate, inspect, list and revoke tokens, sweep expired ones, and
// check, back up and compact the file. Run "tokenstore --help".
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	// SIGHUP too (the terminal or ssh session closed): a command stops as
	// on SIGINT, removing what it was writing (a backup's temporary copy),
	// where the signal's default action would kill it and leave the copy.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
