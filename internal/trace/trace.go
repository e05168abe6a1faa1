// Package trace reads CI workload traces: the CSV format described in
// shared/traces/README.md, one row per CI job, grouped into pipelines and stages.
//
// The reader is strict on purpose: a trace is the yardstick of every simulation,
// so a malformed file is rejected with the line that is wrong rather than
// replayed with a silent guess.
package trace

import (
	"bufio"
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/shoalci/shoal/internal/tags"
)

// Header is the exact first line of a trace file.
const Header = "job_id,pipeline_id,stage,pipeline_created_s,duration_s,tags"

// Trace is a parsed trace file.
type Trace struct {
	Name      string // file name without directory and extension, e.g. "team-week"
	Pipelines []Pipeline
}

// Pipeline is one CI pipeline: its stages run one after the other; the jobs of
// a stage run in parallel.
type Pipeline struct {
	ID        int64
	CreatedAt time.Duration // since the start of the trace (Monday 00:00 UTC)
	Stages    [][]Job       // Stages[k] are the jobs of stage k; never empty
}

// Job is one CI job.
type Job struct {
	ID       int64
	Duration time.Duration // run time once a runner has started it; > 0
	Tags     []string      // runner tags the job needs, in file order
}

// ParseFile reads a trace file; the trace is named after the file.
func ParseFile(path string) (*Trace, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open trace: %w", err)
	}
	defer f.Close()
	name := strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	t, err := Parse(f, name)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

// ParseError names the line of a trace that breaks the format.
type ParseError struct {
	Line int // 1-based; line 1 is the header
	Err  error
}

func (e *ParseError) Error() string { return fmt.Sprintf("line %d: %v", e.Line, e.Err) }
func (e *ParseError) Unwrap() error { return e.Err }

// Parse reads a trace in the CSV format of shared/traces/README.md and checks
// every rule of it: exact header, sorted rows, contiguous stages from 0, one
// pipeline_created_s per pipeline, durations > 0 with one decimal, and unique,
// strictly increasing job ids. The first violation is returned as a *ParseError.
func Parse(r io.Reader, name string) (*Trace, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	sc.Split(scanLF)
	p := parser{tr: &Trace{Name: name}, tags: map[string][]string{}}
	line := 0
	for sc.Scan() {
		line++
		if err := p.row(line, sc.Bytes()); err != nil {
			return nil, &ParseError{Line: line, Err: err}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read trace after line %d: %w", line, err)
	}
	if line == 0 {
		return nil, &ParseError{Line: 1, Err: errors.New("empty file: the first line must be the header " + Header)}
	}
	return p.tr, nil
}

type parser struct {
	tr   *Trace
	tags map[string][]string // one shared slice per distinct tags field
	// last row, for the ordering rules
	lastJob      int64
	lastPipeline int64
	lastStage    int
	lastCreated  int64 // tenths of a second
	seen         map[int64]bool
}

func (p *parser) row(line int, b []byte) error {
	if line == 1 {
		if string(b) != Header {
			return fmt.Errorf("header is %q, want exactly %q", b, Header)
		}
		return nil
	}
	if bytes.IndexByte(b, '\r') >= 0 {
		return errors.New("carriage return: lines must end with \\n only")
	}
	var f [6][]byte
	rest := b
	for i := range 5 {
		j := bytes.IndexByte(rest, ',')
		if j < 0 {
			return fmt.Errorf("%d fields, want 6 (%s)", i+1, Header)
		}
		f[i], rest = rest[:j], rest[j+1:]
	}
	if bytes.IndexByte(rest, ',') >= 0 {
		return fmt.Errorf("more than 6 fields, want 6 (%s)", Header)
	}
	f[5] = rest

	jobID, err := parseInt(f[0])
	if err != nil || jobID <= 0 {
		return fmt.Errorf("job_id %q is not a positive integer", f[0])
	}
	pipelineID, err := parseInt(f[1])
	if err != nil {
		return fmt.Errorf("pipeline_id %q is not an integer", f[1])
	}
	stage64, err := parseInt(f[2])
	if err != nil || stage64 < 0 || stage64 > 1<<20 {
		return fmt.Errorf("stage %q is not a 0-based integer", f[2])
	}
	stage := int(stage64)
	created, err := parseTenths(f[3], false)
	if err != nil {
		return fmt.Errorf("pipeline_created_s %q: %v", f[3], err)
	}
	dur, err := parseTenths(f[4], true)
	if err != nil {
		return fmt.Errorf("duration_s %q: %v", f[4], err)
	}
	if dur <= 0 {
		return fmt.Errorf("duration_s %q must be > 0", f[4])
	}
	tags, err := p.parseTags(f[5])
	if err != nil {
		return err
	}

	first := len(p.tr.Pipelines) == 0
	if !first && jobID <= p.lastJob {
		return fmt.Errorf("job_id %d after %d: job ids must be unique and strictly increasing", jobID, p.lastJob)
	}
	newPipeline := first || pipelineID != p.lastPipeline
	if newPipeline {
		if p.seen == nil {
			p.seen = map[int64]bool{}
		}
		if p.seen[pipelineID] {
			return fmt.Errorf("pipeline %d appears again after other pipelines: a pipeline's rows must be contiguous", pipelineID)
		}
		if !first {
			if created < p.lastCreated || (created == p.lastCreated && pipelineID < p.lastPipeline) {
				return fmt.Errorf("pipeline %d (created %s s) after pipeline %d (created %s s): rows must be sorted by pipeline_created_s, then pipeline_id",
					pipelineID, f[3], p.lastPipeline, tenthsString(p.lastCreated))
			}
		}
		p.seen[pipelineID] = true
		if stage != 0 {
			return fmt.Errorf("pipeline %d starts at stage %d: every pipeline has stage 0 first", pipelineID, stage)
		}
		p.tr.Pipelines = append(p.tr.Pipelines, Pipeline{
			ID:        pipelineID,
			CreatedAt: time.Duration(created) * 100 * time.Millisecond,
			Stages:    [][]Job{nil},
		})
	} else {
		if created != p.lastCreated {
			return fmt.Errorf("pipeline %d has pipeline_created_s %s here and %s before: it must be the same on every row of a pipeline",
				pipelineID, f[3], tenthsString(p.lastCreated))
		}
		switch {
		case stage < p.lastStage:
			return fmt.Errorf("stage %d after stage %d in pipeline %d: rows must be sorted by stage", stage, p.lastStage, pipelineID)
		case stage > p.lastStage+1:
			return fmt.Errorf("stage %d after stage %d in pipeline %d: stages must be contiguous", stage, p.lastStage, pipelineID)
		}
	}
	pl := &p.tr.Pipelines[len(p.tr.Pipelines)-1]
	if stage == len(pl.Stages) {
		pl.Stages = append(pl.Stages, nil)
	}
	pl.Stages[stage] = append(pl.Stages[stage], Job{
		ID:       jobID,
		Duration: time.Duration(dur) * 100 * time.Millisecond,
		Tags:     tags,
	})
	p.lastJob, p.lastPipeline, p.lastStage, p.lastCreated = jobID, pipelineID, stage, created
	return nil
}

// parseTags splits a tags field on ';'. Jobs with the same field share one
// slice: callers must not modify Job.Tags.
func (p *parser) parseTags(b []byte) ([]string, error) {
	if tags, ok := p.tags[string(b)]; ok {
		return tags, nil
	}
	var tags []string
	if len(b) > 0 {
		for t := range strings.SplitSeq(string(b), ";") {
			if t == "" {
				return nil, fmt.Errorf("tags %q has an empty tag", b)
			}
			if strings.TrimSpace(t) != t {
				return nil, fmt.Errorf("tags %q: tag %q has surrounding spaces", b, t)
			}
			tags = append(tags, t)
		}
	}
	p.tags[string(b)] = tags
	return tags, nil
}

func parseInt(b []byte) (int64, error) {
	if len(b) == 0 || b[0] == '+' {
		return 0, errors.New("not an integer")
	}
	return strconv.ParseInt(string(b), 10, 64)
}

// parseTenths reads a non-negative decimal with one digit after the point
// (exactly one when exact, at most one otherwise) as an integer count of
// tenths, so that durations stay exact.
func parseTenths(b []byte, exact bool) (int64, error) {
	intPart, frac, hasDot := bytes.Cut(b, []byte{'.'})
	switch {
	case len(intPart) == 0 || !allDigits(intPart):
		return 0, errors.New("not a non-negative decimal number")
	case hasDot && (len(frac) != 1 || !allDigits(frac)):
		return 0, errors.New("must have exactly one digit after the decimal point")
	case !hasDot && exact:
		return 0, errors.New("must have exactly one decimal, e.g. 12.0")
	case len(intPart) > 12:
		return 0, errors.New("too large")
	}
	n, _ := strconv.ParseInt(string(intPart), 10, 64)
	n *= 10
	if hasDot {
		n += int64(frac[0] - '0')
	}
	return n, nil
}

func allDigits(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func tenthsString(t int64) string { return fmt.Sprintf("%d.%d", t/10, t%10) }

// Jobs counts the jobs of the trace.
func (t *Trace) Jobs() int {
	n := 0
	for _, p := range t.Pipelines {
		n += p.Jobs()
	}
	return n
}

// JobTime is the sum of all job durations: the lower bound on runner time of
// any scaling policy (one job per slot, billed only while busy).
func (t *Trace) JobTime() time.Duration {
	var d time.Duration
	for _, p := range t.Pipelines {
		for _, s := range p.Stages {
			for _, j := range s {
				d += j.Duration
			}
		}
	}
	return d
}

// JobSeconds is JobTime in seconds: the "total job-seconds" of the traces' README.
func (t *Trace) JobSeconds() float64 { return t.JobTime().Seconds() }

// TagSets lists the distinct tag sets of the trace's jobs, each sorted, the
// sets in order of their TagKey.
func (t *Trace) TagSets() [][]string {
	seen := map[string][]string{}
	for _, p := range t.Pipelines {
		for _, s := range p.Stages {
			for _, j := range s {
				k := tags.Key(j.Tags)
				if _, ok := seen[k]; !ok {
					set := slices.Clone(j.Tags)
					slices.Sort(set)
					seen[k] = slices.Compact(set)
				}
			}
		}
	}
	keys := make([]string, 0, len(seen))
	for k := range seen {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	sets := make([][]string, len(keys))
	for i, k := range keys {
		sets[i] = seen[k]
	}
	return sets
}

// End is when the last pipeline is created.
func (t *Trace) End() time.Duration {
	if len(t.Pipelines) == 0 {
		return 0
	}
	return t.Pipelines[len(t.Pipelines)-1].CreatedAt
}

// Jobs counts the pipeline's jobs.
func (p Pipeline) Jobs() int {
	n := 0
	for _, s := range p.Stages {
		n += len(s)
	}
	return n
}

// ZeroWaitMakespan is how long the pipeline takes if every job starts the
// instant it becomes pending: the sum over stages of the slowest job. A
// simulated makespan divided by this is the pipeline's slowdown.
func (p Pipeline) ZeroWaitMakespan() time.Duration {
	var d time.Duration
	for _, s := range p.Stages {
		var slowest time.Duration
		for _, j := range s {
			slowest = max(slowest, j.Duration)
		}
		d += slowest
	}
	return d
}

// ZeroWaitPeak is the largest number of jobs running at once when every job
// starts the instant it becomes pending, and when that peak is first reached.
// Intervals are half-open: a job ending at t and one starting at t do not overlap.
func (t *Trace) ZeroWaitPeak() (int, time.Duration) {
	type edge struct {
		at    time.Duration
		delta int // -1 sorts before +1 at the same instant
	}
	edges := make([]edge, 0, 2*t.Jobs())
	for _, p := range t.Pipelines {
		start := p.CreatedAt
		for _, s := range p.Stages {
			var slowest time.Duration
			for _, j := range s {
				edges = append(edges, edge{start, +1}, edge{start + j.Duration, -1})
				slowest = max(slowest, j.Duration)
			}
			start += slowest
		}
	}
	slices.SortFunc(edges, func(a, b edge) int {
		if c := cmp.Compare(a.at, b.at); c != 0 {
			return c
		}
		return cmp.Compare(a.delta, b.delta)
	})
	peak, cur := 0, 0
	var at time.Duration
	for _, e := range edges {
		cur += e.delta
		if cur > peak {
			peak, at = cur, e.at
		}
	}
	return peak, at
}

// scanLF splits on '\n' only, unlike bufio.ScanLines, so that a stray '\r'
// reaches the row check and is reported.
func scanLF(data []byte, atEOF bool) (int, []byte, error) {
	if i := bytes.IndexByte(data, '\n'); i >= 0 {
		return i + 1, data[:i], nil
	}
	if atEOF && len(data) > 0 {
		return len(data), data, nil
	}
	return 0, nil, nil
}
