package backend

import (
	"context"
	"reflect"
	"sync"
	"time"
)

// Task is work a [Loop] does every Every. A Task whose Every is zero or
// negative never runs.
type Task struct {
	Every time.Duration
	// Run does one round. Its ctx is cancelled when the Loop stops, so a
	// long round should check it between steps and return.
	Run func(ctx context.Context)
}

// Loop is a store's one background goroutine, owned by the call that
// opens the store and stopped by its Close: it runs each [Task] on its own
// ticker, one round at a time, so that no two rounds ever overlap.
type Loop struct {
	cancel context.CancelFunc // cancels the running round's ctx
	stop   chan struct{}      // closed by Stop to end the goroutine
	done   chan struct{}      // closed by the goroutine when it has ended
	once   sync.Once
}

// Start starts the goroutine for the tasks that have a positive Every, and
// returns nil when there are none: a nil *Loop is a stopped one.
func Start(tasks ...Task) *Loop {
	var run []Task
	for _, t := range tasks {
		if t.Every > 0 && t.Run != nil {
			run = append(run, t)
		}
	}
	if len(run) == 0 {
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	l := &Loop{cancel: cancel, stop: make(chan struct{}), done: make(chan struct{})}
	go l.run(ctx, run)
	return l
}

func (l *Loop) run(ctx context.Context, tasks []Task) {
	defer close(l.done)
	// Case 0 is stop; case i+1 is task i's ticker.
	cases := []reflect.SelectCase{{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(l.stop)}}
	for _, t := range tasks {
		tk := time.NewTicker(t.Every)
		defer tk.Stop()
		cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(tk.C)})
	}
	for {
		i, _, _ := reflect.Select(cases)
		if i == 0 {
			return
		}
		tasks[i-1].Run(ctx)
	}
}

// Stop cancels the running round, ends the goroutine and waits for it. It
// may be called more than once, and on a nil *Loop.
func (l *Loop) Stop() {
	if l == nil {
		return
	}
	l.once.Do(func() {
		l.cancel()
		close(l.stop)
		<-l.done
	})
}
