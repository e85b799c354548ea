package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3";
// when empty, the module version from the build info is used.
var version string

// buildInfo says which build this is.
type buildInfo struct {
	Version  string `json:"version"`
	Revision string `json:"revision,omitempty"`
	Modified bool   `json:"modified,omitempty"`
	Go       string `json:"go"`
	Platform string `json:"platform"`
}

func readBuildInfo() buildInfo {
	b := buildInfo{Version: version, Go: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if b.Version == "" {
			b.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				b.Revision = s.Value
			case "vcs.modified":
				b.Modified = s.Value == "true"
			}
		}
	}
	if b.Version == "" {
		b.Version = "(devel)"
	}
	return b
}

// versionString is "v1.2.3 (go1.26.0 linux/amd64, commit 0123abcd)".
func versionString() string {
	b := readBuildInfo()
	s := b.Version + " (" + b.Go + " " + b.Platform
	if b.Revision != "" {
		rev := b.Revision
		if len(rev) > 12 {
			rev = rev[:12]
		}
		s += ", commit " + rev
		if b.Modified {
			s += "+dirty"
		}
	}
	return s + ")"
}

func newVersionCmd(a *app) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:     "version",
		Short:   "Print the version of this build",
		Example: `  tokenstore version`,
		Args:    noArgs,
		RunE: func(*cobra.Command, []string) error {
			if asJSON {
				return writeJSON(a.stdout, readBuildInfo())
			}
			_, err := fmt.Fprintln(a.stdout, "github.com/tokenstore/tokenstore", versionString())
			return err
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the build's details as JSON")
	return cmd
}
