//go:build !unix

package tokenstore

import "io/fs"

// keepOwner: files have no Unix owner here.
func keepOwner(string, fs.FileInfo) error { return nil }
