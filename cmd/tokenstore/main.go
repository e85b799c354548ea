// Command tokenstore administers a tokenstore token file.
//
// This file and root.go are throwaway scaffolding for developing the bench
// command on the perf branch; the cli branch's versions replace them.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
