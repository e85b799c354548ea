package main

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// progress shows what the bench is doing: a bar when stderr is a
// terminal, a line at the start and end of each step otherwise. Write
// errors are ignored: a closed stderr (a broken pipe) stops the bench
// through its signal, not through the progress lines.
type progress interface {
	start(what string, total int64)
	set(n int64)
	done(summary string)
}

func newProgress(w io.Writer) progress {
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		return &barProgress{w: w}
	}
	return &lineProgress{w: w}
}

type lineProgress struct{ w io.Writer }

func (p *lineProgress) start(what string, _ int64) { fmt.Fprintf(p.w, "%s...\n", what) }
func (p *lineProgress) set(int64)                  {}
func (p *lineProgress) done(summary string)        { fmt.Fprintln(p.w, summary) }

type barProgress struct {
	w   io.Writer
	bar *progressbar.ProgressBar
}

func (p *barProgress) start(what string, total int64) {
	p.bar = progressbar.NewOptions64(total,
		progressbar.OptionSetWriter(p.w),
		progressbar.OptionSetDescription(what),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionClearOnFinish(),
	)
}

func (p *barProgress) set(n int64) { _ = p.bar.Set64(n) }

func (p *barProgress) done(summary string) {
	_ = p.bar.Finish()
	fmt.Fprintln(p.w, summary)
}
