package main

import (
	"bytes"
	"context"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shoalci/shoal/internal/clock"
	"github.com/shoalci/shoal/internal/glemu"
	"github.com/shoalci/shoal/internal/trace"
)

// shoal trace export reads what ran in GitLab (here the emulator) and writes
// a trace that shoal sim replays.
func TestTraceExport(t *testing.T) {
	clk := clock.NewVirtual(time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)) // a Tuesday
	gl, glURL, pid, r := serveGitLab(t, clk, "glpat-export")
	if err := gl.RegisterManager(r.Token, "s_1", glemu.ManagerOptions{Capacity: 4}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := gl.CreatePipeline(pid, []glemu.StageSpec{
			{Name: "test", Jobs: []glemu.JobSpec{{Duration: time.Minute, Tags: []string{"docker"}}, {Duration: 2 * time.Minute, Tags: []string{"docker"}}}},
			{Name: "deploy", Jobs: []glemu.JobSpec{{Duration: 30 * time.Second, Tags: []string{"docker"}}}},
		}); err != nil {
			t.Fatal(err)
		}
		clk.Advance(10 * time.Minute)
	}

	out := filepath.Join(t.TempDir(), "mine.csv")
	t.Setenv("GITLAB_TOKEN", "glpat-export")
	var stdout, stderr bytes.Buffer
	args := []string{"trace", "export", "--gitlab-url", glURL, "--project", "root/api", "--since", "2026-11-24", "--until", clk.Now().Format(time.RFC3339), "--out", out}
	if code := run(context.Background(), args, &stdout, &stderr); code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	tr, err := trace.ParseFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if tr.Jobs() != 9 || len(tr.Pipelines) != 3 || tr.Pipelines[0].CreatedAt != 33*time.Hour {
		t.Fatalf("trace of %d pipelines, %d jobs, first at %s: want 3, 9, Tuesday 09:00 (33h after Monday 00:00)", len(tr.Pipelines), tr.Jobs(), tr.Pipelines[0].CreatedAt)
	}
	if want := "3 pipelines, 9 jobs from 1 project,"; !strings.Contains(stderr.String(), want) {
		t.Errorf("stderr lacks %q:\n%s", want, stderr.String())
	}
	// The file replays.
	stdout.Reset()
	if code := run(context.Background(), []string{"sim", "--trace", out, "--json"}, &stdout, &stderr); code != exitOK || !strings.Contains(stdout.String(), `"unfinished_jobs": 0`) {
		t.Fatalf("sim of the export: exit %d\n%s", code, stdout.String())
	}

	for _, tc := range []struct {
		args []string
		env  string
		want string
	}{
		{[]string{"trace", "export"}, "glpat-export", "name at least one --project or --group"},
		{[]string{"trace", "export", "--project", "api"}, "", "set GITLAB_TOKEN"},
		{[]string{"trace", "export", "--project", "api", "--since", "last week"}, "glpat-export", `"last week" is neither`},
	} {
		t.Setenv("GITLAB_TOKEN", tc.env)
		stderr.Reset()
		if code := run(context.Background(), tc.args, &stdout, &stderr); code != exitUsage || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("%v: exit %d, %s; want a usage error with %q", tc.args, code, stderr.String(), tc.want)
		}
	}
	if _, err := os.Stat(out); err != nil {
		t.Fatal(err)
	}
}

func TestParseWhen(t *testing.T) {
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"7d":                   now.AddDate(0, 0, -7),
		"36h":                  now.Add(-36 * time.Hour),
		"2026-11-16":           time.Date(2026, 11, 16, 0, 0, 0, 0, time.UTC),
		"2026-11-16T09:30:00Z": time.Date(2026, 11, 16, 9, 30, 0, 0, time.UTC),
	} {
		if got, err := parseWhen(in, now); err != nil || !got.Equal(want) {
			t.Errorf("parseWhen(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "-3d", "+3d", "+1h", "yesterday", "16/11/2026"} {
		if _, err := parseWhen(bad, now); err == nil {
			t.Errorf("parseWhen(%q): no error", bad)
		}
	}
}

func TestExportWindow(t *testing.T) {
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC) // a Thursday
	day := func(d int) time.Time { return time.Date(2026, 11, d, 0, 0, 0, 0, time.UTC) }
	for _, tc := range []struct {
		since, until string
		from, to     time.Time
		err          string
	}{
		{"", "", day(16), day(23), ""}, // the last whole week
		{"7d", "", now.AddDate(0, 0, -7), now, ""},
		{"2026-11-02", "2026-11-16", day(2), day(16), ""},
		{"", "2026-11-10", day(3), day(10), ""}, // the week before --until
		{"2026-11-30", "", time.Time{}, time.Time{}, "--since 2026-11-30T00:00:00Z is not before now"},
		{"2026-11-12", "2026-11-10", time.Time{}, time.Time{}, "is not before --until 2026-11-10T00:00:00Z"},
		{"", "monday", time.Time{}, time.Time{}, "--until:"},
	} {
		from, to, err := window(tc.since, tc.until, now)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("window(%q, %q): %v, want an error with %q", tc.since, tc.until, err, tc.err)
			}
			continue
		}
		if err != nil || !from.Equal(tc.from) || !to.Equal(tc.to) {
			t.Errorf("window(%q, %q) = %v, %v, %v; want %v to %v", tc.since, tc.until, from, to, err, tc.from, tc.to)
		}
	}
}

// serveGitLab serves a GitLab emulator that accepts token, over HTTP until
// the test ends, with a project root/api and a runner tagged docker.
func serveGitLab(t *testing.T, clk clock.Clock, token string) (gl *glemu.Server, url string, project int64, runner glemu.Runner) {
	t.Helper()
	gl = glemu.New(glemu.Options{Clock: clk, Tokens: []string{token}, Logger: slog.New(slog.DiscardHandler)})
	t.Cleanup(gl.Close)
	srv := httptest.NewServer(gl)
	t.Cleanup(srv.Close)
	project, err := gl.AddProject("api", 0)
	if err != nil {
		t.Fatal(err)
	}
	if runner, err = gl.CreateRunner(glemu.RunnerSpec{Tags: []string{"docker"}}); err != nil {
		t.Fatal(err)
	}
	return gl, srv.URL, project, runner
}
