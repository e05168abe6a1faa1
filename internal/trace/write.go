package trace

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"time"
)

// Write writes t in the trace format, one row per job in the order of t:
// pipelines, their stages, their jobs. Times are rounded to a tenth of a
// second; a job shorter than that is written as 0.1 s, since the format wants
// every duration > 0. What is written is read back with Parse first, so Write
// never produces a file the simulator would reject: a trace out of order, or
// with job IDs that do not increase, is an error naming the line.
func Write(w io.Writer, t *Trace) error {
	var b bytes.Buffer
	b.WriteString(Header + "\n")
	for _, p := range t.Pipelines {
		for k, stage := range p.Stages {
			for _, j := range stage {
				// Parse, below, checks the rest, but would read these as no
				// tag, or as other fields, rows or tags.
				for _, tag := range j.Tags {
					if tag == "" || strings.ContainsAny(tag, ",;\n\r") {
						return fmt.Errorf("write trace: job %d of pipeline %d: tag %q cannot be written (a tag must be non-empty, without commas, semicolons or line breaks)", j.ID, p.ID, tag)
					}
				}
				fmt.Fprintf(&b, "%d,%d,%d,%s,%s,%s\n", j.ID, p.ID, k, tenths(p.CreatedAt), tenths(max(j.Duration, 100*time.Millisecond)), strings.Join(j.Tags, ";"))
			}
		}
	}
	if _, err := Parse(bytes.NewReader(b.Bytes()), t.Name); err != nil {
		return fmt.Errorf("write trace: %w", err)
	}
	_, err := w.Write(b.Bytes())
	return err
}

// tenths formats d in seconds with one decimal, rounded half up.
func tenths(d time.Duration) string {
	if d < 0 {
		return "-" + tenths(-d) // Parse rejects it, naming the line
	}
	return tenthsString(int64(d.Round(100*time.Millisecond) / (100 * time.Millisecond)))
}

// WeekStart is the Monday 00:00 UTC on or before t: where a trace of a
// window beginning at t starts, since by the format's convention a trace
// starts on a Monday at midnight UTC.
func WeekStart(t time.Time) time.Time {
	t = t.UTC()
	day := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	return day.AddDate(0, 0, -((int(day.Weekday()) + 6) % 7))
}
