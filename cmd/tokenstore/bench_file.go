package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/tokenstore/tokenstore"
)

// benchFile makes the file the bench runs on: a fresh one in the
// temporary directory, or, with existing, a copy of that token file beside
// it (on its disk, at its size). It returns the path to open it by and
// how to remove it.
//
// Where the system has /proc/self/fd (Linux), the file is unlinked as soon
// as it is created and opened through /proc/self/fd/N: no name of it is
// left in any directory, so nothing is left behind however the process
// ends — a signal it catches, a broken pipe, SIGKILL, the OOM killer. The
// space is freed when the last descriptor closes. Elsewhere the file keeps
// its name and remove deletes it; the bench stops and calls it on SIGINT,
// SIGTERM, SIGHUP and SIGPIPE (see benchSignals).
func benchFile(ctx context.Context, existing string) (path string, remove func() error, err error) {
	var f *os.File
	var src *tokenstore.DB
	if existing == "" {
		if f, err = os.CreateTemp("", "tokenstore-bench-*.db"); err != nil {
			return "", nil, err
		}
	} else {
		if _, err := os.Stat(existing); err != nil {
			return "", nil, fmt.Errorf("--db: %w", err)
		}
		// A read-only store: bbolt's shared lock keeps writers out while
		// the copy is taken, and Backup reads one consistent transaction.
		if src, err = tokenstore.Open(existing, &tokenstore.Options{ReadOnly: true}); err != nil {
			// The library's error has its own "tokenstore: ", and main adds one.
			return "", nil, &explained{"--db: " + strings.TrimPrefix(err.Error(), "tokenstore: "), err}
		}
		defer src.Close()
		if f, err = os.CreateTemp(filepath.Dir(existing), filepath.Base(existing)+".bench-*"); err != nil {
			return "", nil, fmt.Errorf("--db: copying it: %w", err)
		}
	}
	name := f.Name()
	path, unlinked := name, false
	if proc := "/proc/self/fd/" + strconv.Itoa(int(f.Fd())); fileExists(proc) && os.Remove(name) == nil {
		path, unlinked = proc, true
	}
	remove = func() error {
		err := f.Close()
		if !unlinked {
			if rerr := os.Remove(name); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
				err = errors.Join(err, rerr)
			}
		}
		return err
	}
	if src != nil {
		if _, err := src.Backup(ctx, f); err != nil {
			return "", nil, errors.Join(fmt.Errorf("--db: copying it: %w", err), remove())
		}
	}
	return path, remove, nil
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// benchSignals stop the bench, which then removes its file and exits 1:
// an interrupt, a termination, a closed terminal, and a reader that went
// away (bench | head). While the bench is notified of SIGPIPE, a write to
// a closed stdout or stderr fails with EPIPE instead of killing the
// process.
var benchSignals = []os.Signal{os.Interrupt, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGPIPE}

// errStopped is the cause of a bench's context when a signal stopped it.
type errStopped struct{ sig os.Signal }

func (e errStopped) Error() string {
	name := e.sig.String()
	switch e.sig {
	case os.Interrupt:
		name = "SIGINT"
	case syscall.SIGTERM:
		name = "SIGTERM"
	case syscall.SIGHUP:
		name = "SIGHUP"
	case syscall.SIGPIPE:
		name = "SIGPIPE (the output was closed)"
	}
	return "interrupted by " + name
}

// onSignals returns a context that is cancelled, with an errStopped cause,
// when the process receives one of sigs, and a function that stops
// listening and waits for its goroutine. main listens for SIGINT, SIGTERM
// and SIGHUP this way for every command; bench adds SIGPIPE.
func onSignals(parent context.Context, sigs ...os.Signal) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(parent)
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, sigs...)
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		select {
		case sig := <-ch:
			cancel(errStopped{sig})
		case <-done:
		}
	}()
	return ctx, func() {
		signal.Stop(ch)
		close(done)
		<-stopped
		cancel(nil)
	}
}
