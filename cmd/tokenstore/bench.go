package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// newBenchCmd is a placeholder: the perf branch replaces this file with the
// real benchmark command.
func newBenchCmd(a *app) *cobra.Command {
	_ = a
	return &cobra.Command{
		Use:   "bench",
		Short: "Measure the store on this machine (not built yet)",
		Args:  cobra.ArbitraryArgs,
		RunE: func(*cobra.Command, []string) error {
			return errors.New("bench: not built yet")
		},
	}
}
