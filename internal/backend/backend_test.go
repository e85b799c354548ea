package backend_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tokenstore/tokenstore/internal/backend"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestLoop_RunsTasksAndStops(t *testing.T) {
	var a, b atomic.Int64
	ranA, ranB := make(chan struct{}, 1), make(chan struct{}, 1)
	l := backend.Start(
		backend.Task{Every: time.Millisecond, Run: func(context.Context) {
			a.Add(1)
			select {
			case ranA <- struct{}{}:
			default:
			}
		}},
		backend.Task{Every: 2 * time.Millisecond, Run: func(context.Context) {
			b.Add(1)
			select {
			case ranB <- struct{}{}:
			default:
			}
		}},
		backend.Task{Every: -1, Run: func(context.Context) { t.Error("a task with a negative Every ran") }},
	)
	<-ranA
	<-ranB
	l.Stop()
	after := a.Load() + b.Load()
	l.Stop() // a second Stop returns at once
	if now := a.Load() + b.Load(); now != after {
		t.Fatalf("a task ran after Stop: %d rounds, then %d", after, now)
	}
}

func TestLoop_StopCancelsTheRunningRound(t *testing.T) {
	started := make(chan struct{})
	var sawCancel atomic.Bool
	l := backend.Start(backend.Task{Every: time.Millisecond, Run: func(ctx context.Context) {
		select {
		case started <- struct{}{}:
		default:
			return
		}
		<-ctx.Done() // a round that only ends when Stop cancels it
		sawCancel.Store(true)
	}})
	<-started
	l.Stop()
	if !sawCancel.Load() {
		t.Fatal("Stop returned before the round saw its ctx cancelled")
	}
}

func TestLoop_NoTasks(t *testing.T) {
	l := backend.Start(backend.Task{Every: 0, Run: func(context.Context) {}})
	if l != nil {
		t.Fatal("Start with no runnable task returned a Loop")
	}
	l.Stop() // nil: no-op
}

func TestWrap(t *testing.T) {
	sentinel := errors.New("tokenstore: token has expired")
	err := backend.Wrap("redisstore", "validate", sentinel)
	if got, want := err.Error(), "redisstore: validate: token has expired"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	if !errors.Is(err, sentinel) {
		t.Fatal("the sentinel is lost")
	}
	inner := fmt.Errorf("redisstore: out of memory: %w", sentinel)
	if got, want := backend.Wrap("redisstore", "issue", inner).Error(), "redisstore: issue: out of memory: tokenstore: token has expired"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	if got, want := backend.Wrap("tokenstore", "", inner).Error(), "tokenstore: out of memory: tokenstore: token has expired"; got != want {
		t.Fatalf("an empty op: got %q, want %q", got, want)
	}
	if backend.Wrap("x", "y", nil) != nil {
		t.Fatal("Wrap(nil) is not nil")
	}
}
