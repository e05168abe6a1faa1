package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const smallTrace = `job_id,pipeline_id,stage,pipeline_created_s,duration_s,tags
1,1,0,60.0,120.0,docker
2,1,1,60.0,90.0,docker
3,2,0,600.0,60.0,docker;large
`

func TestSimCommand(t *testing.T) {
	path := filepath.Join(t.TempDir(), "small.csv")
	if err := os.WriteFile(path, []byte(smallTrace), 0o600); err != nil {
		t.Fatal(err)
	}
	dockerOnly := filepath.Join(t.TempDir(), "docker.toml")
	if err := os.WriteFile(dockerOnly, []byte("[[pool]]\nname = \"docker\"\ntags = [\"docker\"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"sim"}, exitUsage, "--trace FILE is required"},
		{[]string{"sim", "--trace", path, "--policy", "magic"}, exitUsage, "unknown policy"},
		{[]string{"sim", "--trace", path, "--param", "idle_count"}, exitUsage, "NAME=NUMBER"},
		{[]string{"sim", "--trace", path, "--compare", "--policy", "static"}, exitUsage, "--compare runs every policy"},
		{[]string{"sim", "--trace", path, "--compare", "--jobs", path + ".jobs"}, exitUsage, "--compare runs every policy"},
		{[]string{"sim", "--trace", path + ".missing"}, exitFailure, "no such file"},
		{[]string{"sim", "--trace", path, "--config", dockerOnly}, exitFailure, "no pool takes the jobs tagged docker;large"},
		{[]string{"sim", "--trace", path, "--policy", "docker-machine", "--param", "idle_count=1"}, exitOK, "docker-machine  idle_count=1"},
		{[]string{"sim", "--trace", path, "--compare"}, exitOK, "waited at least a cold start (65 s, the shortest boot plus registration)"},
	} {
		t.Run(strings.Join(tc.args[1:], " "), func(t *testing.T) {
			var out bytes.Buffer
			if code := run(context.Background(), tc.args, &out, &out); code != tc.code || !strings.Contains(out.String(), tc.out) {
				t.Fatalf("exit %d, output:\n%s\nwant exit %d and %q", code, out.String(), tc.code, tc.out)
			}
		})
	}

	var out, errs bytes.Buffer
	if code := run(context.Background(), []string{"sim", "--trace", path, "--json", "--seed", "7"}, &out, &errs); code != exitOK {
		t.Fatalf("exit %d: %s", code, errs.String())
	}
	var res map[string]any
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("--json printed %q: %v", out.String(), err)
	}
	for _, key := range []string{"trace", "policy", "jobs", "unfinished_jobs", "wait_s", "pipeline_slowdown", "cost_usd",
		"lower_bound_usd", "cost_ratio", "droplets_created", "peak_droplets", "droplet_hours", "api_requests",
		"api_requests_max_per_minute", "rate_limited_responses", "wall_s"} {
		if _, ok := res[key]; !ok {
			t.Errorf("--json output lacks %q", key)
		}
	}
	if w := res["wait_s"].(map[string]any); len(w) != 5 {
		t.Errorf("wait_s = %v, want p50, p95, p99, max, mean", w)
	}

	// --jobs: one row per trace job, in trace order, with the trace's IDs.
	jobs := filepath.Join(t.TempDir(), "jobs.csv")
	if code := run(context.Background(), []string{"sim", "--trace", path, "--jobs", jobs}, &out, &errs); code != exitOK {
		t.Fatalf("--jobs: exit %d: %s", code, errs.String())
	}
	data, err := os.ReadFile(jobs)
	if err != nil {
		t.Fatal(err)
	}
	rows := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(rows) != 4 || rows[0] != "job_id,pipeline_id,stage,tags,queued_s,wait_s,finished" {
		t.Fatalf("--jobs wrote:\n%s", data)
	}
	// Job 2 (stage 1) becomes pending when job 1 ends: 60 s + job 1's wait + 120 s.
	var wait1, queued2 float64
	for i, want := range []string{"1,1,0,docker,60.000,", "2,1,1,docker,", "3,2,0,docker;large,600.000,"} {
		if !strings.HasPrefix(rows[i+1], want) || !strings.HasSuffix(rows[i+1], ",true") {
			t.Errorf("row %d = %q, want %q… finished", i+1, rows[i+1], want)
		}
	}
	if _, err := fmt.Sscanf(strings.Split(rows[1], ",")[5], "%g", &wait1); err != nil {
		t.Fatal(err)
	}
	if _, err := fmt.Sscanf(strings.Split(rows[2], ",")[4], "%g", &queued2); err != nil {
		t.Fatal(err)
	}
	if math.Abs(queued2-(60+wait1+120)) > 0.01 {
		t.Errorf("job 2 queued at %.1f s, want 60 + %.1f (job 1's wait) + 120", queued2, wait1)
	}
}

// TestDemo runs the README's main command.
func TestDemo(t *testing.T) {
	report := filepath.Join(t.TempDir(), "demo.html")
	var out bytes.Buffer
	if code := run(context.Background(), []string{"demo", "--report", report}, &out, &out); code != exitOK {
		t.Fatalf("demo exited %d:\n%s", code, out.String())
	}
	for _, want := range []string{"shoal", "docker-machine", "p95 s", "shoal's mean wait for a runner is", "Report with charts"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("demo output lacks %q:\n%s", want, out.String())
		}
	}
	html, err := os.ReadFile(report)
	if err != nil || !bytes.Contains(html, []byte("<svg")) {
		t.Fatalf("report %s: %v", report, err)
	}
}

func TestChangeIsInPercentOfTheBaseline(t *testing.T) {
	for _, c := range []struct {
		a, b float64
		want string
	}{{13.1, 21.5, "39% lower"}, {12, 10, "20% higher"}, {10, 10.01, "about the same"}, {0, 0, "about the same"}, {5, 0, "higher"}} {
		if got := change(c.a, c.b); got != c.want {
			t.Errorf("change(%v, %v) = %q, want %q", c.a, c.b, got, c.want)
		}
	}
}
