// Package reliability holds tokenstore's reliability suite: crash (kill -9)
// durability, disk full, locking and permissions, hostile files, clock
// steps, a model-based test, a race stress and secrets kept out of files,
// logs and errors. It uses only the public API, and has no code of its own:
// the tests are in its _test.go files.
//
// The long runs take flags, for example:
//
//	go test ./reliability -run '^TestCrash_' -crash.rounds=500 -timeout 1h
package reliability
