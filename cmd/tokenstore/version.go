package main

import (
	"cmp"
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// release is the version of this source tree: the newest entry of
// CHANGELOG.md (a test holds the two together).
const release = "v0.1.0"

// version overrides release at build time, for a packager's own tag:
// -ldflags "-X main.version=v1.2.3".
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
	b := buildInfo{Version: cmp.Or(version, release), Go: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				b.Revision = s.Value
			case "vcs.modified":
				b.Modified = s.Value == "true"
			}
		}
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
			_, err := fmt.Fprintln(a.stdout, "tokenstore", versionString())
			return err
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the build's details as JSON")
	return cmd
}
