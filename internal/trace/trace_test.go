package trace_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shoalci/shoal/internal/tags"
	"github.com/shoalci/shoal/internal/trace"
)

// testdata holds byte-identical copies of the developer traces of
// shared/traces; the figures asserted below come from that README.
func traceFile(t testing.TB, name string) string {
	t.Helper()
	path := filepath.Join("testdata", name)
	if _, err := os.Stat(path); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestParseSharedTraces(t *testing.T) {
	// Figures from shared/traces/README.md.
	tests := []struct {
		file      string
		pipelines int
		jobs      int
		jobTime   time.Duration
		peak      int
		peakAt    time.Duration // UTC from Monday 00:00, minute precision
		largeJobs int
	}{
		{"team-week.csv", 1219, 6827, 1838945 * time.Second, 33, 6*24*time.Hour + 23*time.Hour + 45*time.Minute, 167},
		{"release-day.csv", 437, 2654, 712195*time.Second + 700*time.Millisecond, 200, 14*time.Hour + 23*time.Minute, 67},
		{"nightly.csv", 296, 2850, 1034512*time.Second + 700*time.Millisecond, 209, 3*24*time.Hour + 2*time.Hour, 54},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			tr, err := trace.ParseFile(traceFile(t, tt.file))
			if err != nil {
				t.Fatal(err)
			}
			if want := strings.TrimSuffix(tt.file, ".csv"); tr.Name != want {
				t.Errorf("Name = %q, want %q", tr.Name, want)
			}
			if got := len(tr.Pipelines); got != tt.pipelines {
				t.Errorf("pipelines = %d, want %d", got, tt.pipelines)
			}
			if got := tr.Jobs(); got != tt.jobs {
				t.Errorf("jobs = %d, want %d", got, tt.jobs)
			}
			if got := tr.JobTime(); got != tt.jobTime {
				t.Errorf("job time = %v, want %v", got, tt.jobTime)
			}
			if got, want := tr.JobSeconds(), tt.jobTime.Seconds(); got != want {
				t.Errorf("job-seconds = %.1f, want %.1f", got, want)
			}
			peak, at := tr.ZeroWaitPeak()
			if peak != tt.peak {
				t.Errorf("zero-wait peak = %d, want %d", peak, tt.peak)
			}
			if at.Truncate(time.Minute) != tt.peakAt {
				t.Errorf("zero-wait peak at %v, want %v", at, tt.peakAt)
			}
			large := 0
			for _, p := range tr.Pipelines {
				for _, s := range p.Stages {
					for _, j := range s {
						if tags.Key(j.Tags) == "docker;large" {
							large++
						}
					}
				}
			}
			if large != tt.largeJobs {
				t.Errorf("docker;large jobs = %d, want %d", large, tt.largeJobs)
			}
			if got, want := tr.TagSets(), [][]string{{"docker"}, {"docker", "large"}}; !slices.EqualFunc(got, want, slices.Equal) {
				t.Errorf("TagSets = %v, want %v", got, want)
			}
		})
	}
}

func TestParseStructure(t *testing.T) {
	in := trace.Header + `
1,7,0,30.9,213.7,docker
2,7,0,30.9,83.3,docker
3,7,1,30.9,235.5,docker;large
4,7,2,30.9,79.0,docker
5,3,0,31,5.0,
6,9,0,31.0,1.5,large;docker
`
	tr, err := trace.Parse(strings.NewReader(in), "t")
	if err != nil {
		t.Fatal(err)
	}
	if len(tr.Pipelines) != 3 {
		t.Fatalf("pipelines = %d, want 3", len(tr.Pipelines))
	}
	p := tr.Pipelines[0]
	if p.ID != 7 || p.CreatedAt != 30*time.Second+900*time.Millisecond || len(p.Stages) != 3 || len(p.Stages[0]) != 2 {
		t.Errorf("pipeline 0 = %+v", p)
	}
	if got, want := p.ZeroWaitMakespan(), (2137+2355+790)*100*time.Millisecond; got != want {
		t.Errorf("ZeroWaitMakespan = %v, want %v", got, want)
	}
	if got := p.Stages[1][0].Tags; !slices.Equal(got, []string{"docker", "large"}) {
		t.Errorf("stage 1 tags = %v", got)
	}
	if got := tr.Pipelines[1].Stages[0][0].Tags; len(got) != 0 {
		t.Errorf("empty tags field gave %v, want none", got)
	}
	if got, want := tr.TagSets(), [][]string{{}, {"docker"}, {"docker", "large"}}; !slices.EqualFunc(got, want, func(a, b []string) bool { return slices.Equal(a, b) }) {
		t.Errorf("TagSets = %q, want %q", got, want)
	}
	if got, want := tr.End(), 31*time.Second; got != want {
		t.Errorf("End = %v, want %v", got, want)
	}
}

func TestParseErrors(t *testing.T) {
	h := trace.Header + "\n"
	tests := []struct {
		name, in string
		line     int
		msg      string
	}{
		{"empty", "", 1, "empty file"},
		{"bad header", "job_id,pipeline_id,stage,created,duration_s,tags\n", 1, "header"},
		{"header with CRLF", trace.Header + "\r\n", 1, "header"},
		{"row CRLF", h + "1,1,0,0.0,1.0,docker\r\n", 2, "carriage return"},
		{"few fields", h + "1,1,0,0.0,1.0\n", 2, "5 fields"},
		{"many fields", h + "1,1,0,0.0,1.0,docker,x\n", 2, "more than 6"},
		{"job id zero", h + "0,1,0,0.0,1.0,docker\n", 2, "job_id"},
		{"job id text", h + "a,1,0,0.0,1.0,docker\n", 2, "job_id"},
		{"job id plus", h + "+1,1,0,0.0,1.0,docker\n", 2, "job_id"},
		{"pipeline id", h + "1,x,0,0.0,1.0,docker\n", 2, "pipeline_id"},
		{"stage negative", h + "1,1,-1,0.0,1.0,docker\n", 2, "stage"},
		{"created two decimals", h + "1,1,0,0.05,1.0,docker\n", 2, "pipeline_created_s"},
		{"created negative", h + "1,1,0,-1.0,1.0,docker\n", 2, "pipeline_created_s"},
		{"duration no decimal", h + "1,1,0,0.0,1,docker\n", 2, "exactly one decimal"},
		{"duration zero", h + "1,1,0,0.0,0.0,docker\n", 2, "> 0"},
		{"duration exponent", h + "1,1,0,0.0,1e3,docker\n", 2, "duration_s"},
		{"empty tag", h + "1,1,0,0.0,1.0,docker;;large\n", 2, "empty tag"},
		{"job ids not increasing", h + "2,1,0,0.0,1.0,docker\n1,1,0,0.0,1.0,docker\n", 3, "strictly increasing"},
		{"duplicate job id", h + "1,1,0,0.0,1.0,docker\n1,1,0,0.0,1.0,docker\n", 3, "strictly increasing"},
		{"unsorted created", h + "1,1,0,5.0,1.0,docker\n2,2,0,4.0,1.0,docker\n", 3, "sorted"},
		{"unsorted pipeline id", h + "1,2,0,5.0,1.0,docker\n2,1,0,5.0,1.0,docker\n", 3, "sorted"},
		{"pipeline not contiguous", h + "1,1,0,5.0,1.0,docker\n2,2,0,5.0,1.0,docker\n3,1,1,5.0,1.0,docker\n", 4, "contiguous"},
		{"no stage 0", h + "1,1,1,0.0,1.0,docker\n", 2, "stage 0"},
		{"stage gap", h + "1,1,0,0.0,1.0,docker\n2,1,2,0.0,1.0,docker\n", 3, "contiguous"},
		{"stage backwards", h + "1,1,0,0.0,1.0,docker\n2,1,1,0.0,1.0,docker\n3,1,0,0.0,1.0,docker\n", 4, "sorted by stage"},
		{"two created times", h + "1,1,0,0.0,1.0,docker\n2,1,1,0.5,1.0,docker\n", 3, "same on every row"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := trace.Parse(strings.NewReader(tt.in), "bad")
			var pe *trace.ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error = %v, want a *ParseError", err)
			}
			if pe.Line != tt.line {
				t.Errorf("line = %d, want %d (%v)", pe.Line, tt.line, err)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q does not mention %q", err, tt.msg)
			}
		})
	}
}

func TestParseFileNamesPath(t *testing.T) {
	path := filepath.Join(t.TempDir(), "broken.csv")
	if err := os.WriteFile(path, []byte(trace.Header+"\n1,1,0,0.0,0.0,docker\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := trace.ParseFile(path)
	if err == nil || !strings.Contains(err.Error(), path+": line 2:") {
		t.Fatalf("error = %v, want it to name %s and line 2", err, path)
	}
}

func BenchmarkParseTeamWeek(b *testing.B) {
	data, err := os.ReadFile(traceFile(b, "team-week.csv"))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := trace.Parse(strings.NewReader(string(data)), "team-week"); err != nil {
			b.Fatal(err)
		}
	}
}
