package deploy

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
)

// Progress tells a person what a deploy is doing, step by step.
type Progress interface {
	// Step starts a new stage ("Acquiring deploy lock").
	Step(format string, args ...any)
	// Info is a detail of the current stage.
	Info(format string, args ...any)
	// Warn is something the person should know but that doesn't stop the deploy.
	Warn(format string, args ...any)
	// Log is one line of a task's output.
	Log(source, line string)
	// Service reports a service's rollout state; called often, shown when it changes.
	Service(name string, s ServiceState)
}

// ServiceState is a service's rollout as seen by the converge loop.
type ServiceState struct {
	Running, Desired uint64
	State            string // creating, updating, completed, rolling back, ...
	Message          string
}

// NewProgress picks bars for a terminal and plain lines otherwise (CI logs).
func NewProgress(w io.Writer) Progress {
	if f, ok := w.(*os.File); ok && os.Getenv("CI") == "" && os.Getenv("TERM") != "dumb" {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			return &ttyProgress{plain: plain{w: w}, states: map[string]ServiceState{}}
		}
	}
	return &plain{w: w, last: map[string]ServiceState{}}
}

// plain writes one line per event, and a service line only when its state changes,
// so CI logs stay short and readable.
type plain struct {
	mu   sync.Mutex
	w    io.Writer
	last map[string]ServiceState
}

func (p *plain) Step(format string, args ...any) { p.line("==> " + fmt.Sprintf(format, args...)) }
func (p *plain) Info(format string, args ...any) { p.line("    " + fmt.Sprintf(format, args...)) }
func (p *plain) Warn(format string, args ...any) {
	p.line("    warning: " + fmt.Sprintf(format, args...))
}
func (p *plain) Log(source, line string) { p.line(fmt.Sprintf("    %s | %s", source, line)) }

func (p *plain) Service(name string, s ServiceState) {
	p.mu.Lock()
	if p.last[name] == s {
		p.mu.Unlock()
		return
	}
	p.last[name] = s
	p.mu.Unlock()
	p.line("    " + serviceLine(name, s, false))
}

func (p *plain) line(s string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintln(p.w, s)
}

func serviceLine(name string, s ServiceState, bar bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-28s ", name)
	if bar {
		const width = 20
		filled := 0
		if s.Desired > 0 {
			filled = int(min(s.Running, s.Desired) * width / s.Desired)
		}
		fmt.Fprintf(&b, "[%s%s] ", strings.Repeat("#", filled), strings.Repeat(" ", width-filled))
	}
	fmt.Fprintf(&b, "%d/%d running, %s", s.Running, s.Desired, s.State)
	if s.Message != "" {
		fmt.Fprintf(&b, ": %s", s.Message)
	}
	return b.String()
}

// ttyProgress redraws a block of bars, one per service, under the step lines.
type ttyProgress struct {
	plain
	states map[string]ServiceState
	drawn  int // lines of the live block on screen
}

func (t *ttyProgress) Step(format string, args ...any) { t.settle(); t.plain.Step(format, args...) }
func (t *ttyProgress) Info(format string, args ...any) { t.settle(); t.plain.Info(format, args...) }
func (t *ttyProgress) Warn(format string, args ...any) { t.settle(); t.plain.Warn(format, args...) }
func (t *ttyProgress) Log(source, line string)         { t.settle(); t.plain.Log(source, line) }

// settle leaves the live block on screen as it is and starts a fresh one later.
func (t *ttyProgress) settle() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.drawn = 0
	t.states = map[string]ServiceState{}
}

func (t *ttyProgress) Service(name string, s ServiceState) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.states[name] = s
	names := make([]string, 0, len(t.states))
	for n := range t.states {
		names = append(names, n)
	}
	sort.Strings(names)
	if t.drawn > 0 {
		fmt.Fprintf(t.w, "\x1b[%dA", t.drawn) // cursor up to the block's first line
	}
	for _, n := range names {
		fmt.Fprintf(t.w, "\x1b[2K    %s\n", serviceLine(n, t.states[n], true))
	}
	t.drawn = len(names)
}
