package sim

import (
	"bytes"
	_ "embed"

	"github.com/shoalci/shoal/internal/trace"
)

// The demo's trace: one Monday of a 30-engineer team with 150 release
// pipelines between 14:00 and 14:45 UTC (a copy of shared/traces/release-day.csv).
//
//go:embed demo/release-day.csv
var demoTrace []byte

// DemoTrace returns the bundled one-day trace with a release burst.
func DemoTrace() (*trace.Trace, error) {
	return trace.Parse(bytes.NewReader(demoTrace), "release-day")
}
