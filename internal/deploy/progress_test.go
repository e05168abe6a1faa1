package deploy

import (
	"bytes"
	"regexp"
	"strings"
	"testing"
)

// In CI (not a terminal) every event is one plain line, and a service's line is
// repeated only when its state changes, so logs stay short.
func TestPlainProgress(t *testing.T) {
	var buf bytes.Buffer
	p := NewProgress(&buf)
	if _, ok := p.(*plain); !ok {
		t.Fatalf("NewProgress(buffer) = %T, want plain lines", p)
	}
	p.Step("Rolling out %d service(s)", 1)
	for range 3 {
		p.Service("shop_web", ServiceState{Running: 1, Desired: 2, State: "updating"})
	}
	p.Service("shop_web", ServiceState{Running: 2, Desired: 2, State: "converged"})
	p.Log("release 1", "Applying shop.0002_order... OK")
	p.Warn("careful")
	want := `==> Rolling out 1 service(s)
    shop_web                     1/2 running, updating
    shop_web                     2/2 running, converged
    release 1 | Applying shop.0002_order... OK
    warning: careful
`
	if buf.String() != want {
		t.Errorf("plain output:\n%s\nwant:\n%s", buf.String(), want)
	}
}

// On a terminal the services' bars are redrawn in place under the step lines.
var cursorUp = regexp.MustCompile(`\x1b\[\d+A`)

func TestTTYProgressRedrawsInPlace(t *testing.T) {
	var buf bytes.Buffer
	p := &ttyProgress{plain: plain{w: &buf}, states: map[string]ServiceState{}}
	p.Service("shop_api", ServiceState{Running: 0, Desired: 1, State: "starting"})
	p.Service("shop_web", ServiceState{Running: 1, Desired: 2, State: "updating"})
	out := buf.String()
	if !cursorUp.MatchString(out) {
		t.Errorf("second update did not move the cursor up over the first block: %q", out)
	}
	if !strings.Contains(out, "[##########          ] 1/2 running, updating") {
		t.Errorf("no half-full bar for 1/2: %q", out)
	}
	buf.Reset()
	p.Step("Deployed")
	p.Service("shop_web", ServiceState{Running: 2, Desired: 2, State: "converged"})
	if cursorUp.MatchString(buf.String()) {
		t.Errorf("the block after a step line moved the cursor up over it: %q", buf.String())
	}
}
