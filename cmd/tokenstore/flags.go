package main

import (
	"fmt"

	"github.com/spf13/cobra"
	"github.com/tokenstore/tokenstore"
)

// noArgs and maxArgs are cobra.PositionalArgs that fail as usage errors.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("%s takes no arguments, got %d", cmd.Name(), len(args))
	}
	return nil
}

func maxArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) > n {
			return usagef("%s takes at most %d argument(s), got %d", cmd.Name(), n, len(args))
		}
		return nil
	}
}

func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usagef("%s takes %d argument(s), got %d", cmd.Name(), n, len(args))
		}
		return nil
	}
}

// checkSubject refuses a --subject the library would refuse, saying what
// it accepts.
func checkSubject(s string) error {
	if err := tokenstore.ValidateSubject(s); err != nil {
		return &usageError{&explained{fmt.Sprintf("%v (--subject takes 1 to %d bytes of UTF-8 without control characters, such as a user ID)", err, tokenstore.MaxSubjectLen), err}}
	}
	return nil
}
