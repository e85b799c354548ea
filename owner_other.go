//go:build !unix

package tokenstore

import "io/fs"

// keepOwner: files have no Unix owner here.
func keepOwner(string, fs.FileInfo) error { return nil }

// hardLinks: not counted here.
func hardLinks(fs.FileInfo) uint64 { return 1 }
