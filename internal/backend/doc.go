// Package backend holds what the store backends (the bbolt file at the
// module root, redisstore) share: the one background goroutine a store
// owns from its opening to its Close, and the error wrapper that names the
// operation once and the package prefix once.
package backend
