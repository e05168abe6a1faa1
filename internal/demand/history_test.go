package demand_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	gitlab "gitlab.com/gitlab-org/api/client-go"

	"github.com/shoalci/shoal/internal/clock"
	"github.com/shoalci/shoal/internal/demand"
	"github.com/shoalci/shoal/internal/glemu"
	"github.com/shoalci/shoal/internal/trace"
)

// History turns what ran in GitLab into a trace: stages in GitLab's order,
// durations from GitLab, times from the Monday before, pipelines still running
// and pipelines from before the window left out.
func TestHistory(t *testing.T) {
	w := newWorld(t)
	spec := func(d time.Duration, tags ...string) glemu.JobSpec { return glemu.JobSpec{Duration: d, Tags: tags} }
	create := func(project int64, stages ...glemu.StageSpec) {
		t.Helper()
		if _, err := w.gl.CreatePipeline(project, stages); err != nil {
			t.Fatal(err)
		}
	}
	create(w.web, glemu.StageSpec{Name: "test", Jobs: []glemu.JobSpec{spec(time.Minute, "docker")}}) // before the window
	w.clk.Advance(time.Minute)
	since := w.clk.Now()
	create(w.web,
		glemu.StageSpec{Name: "test", Jobs: []glemu.JobSpec{spec(30*time.Second, "docker"), spec(90*time.Second, "docker")}},
		glemu.StageSpec{Name: "build", Jobs: []glemu.JobSpec{spec(time.Minute, "large", "docker")}})
	w.clk.Advance(time.Minute + 500*time.Millisecond)
	create(w.api, glemu.StageSpec{Name: "lint", Jobs: []glemu.JobSpec{spec(45*time.Second, "docker")}})
	w.clk.Advance(time.Minute)
	create(w.web, glemu.StageSpec{Name: "test", Jobs: []glemu.JobSpec{spec(time.Hour, "docker")}}) // still running at the end
	for _, m := range []struct {
		r   glemu.Runner
		sys string
	}{{w.docker, "s_docker"}, {w.large, "s_large"}} {
		if err := w.gl.RegisterManager(m.r.Token, m.sys, glemu.ManagerOptions{Capacity: 10}); err != nil {
			t.Fatal(err)
		}
	}
	w.clk.Advance(10 * time.Minute)

	src, err := demand.NewSource(w.client(t, token), demand.Config{Groups: []string{"acme"}}, w.clk)
	if err != nil {
		t.Fatal(err)
	}
	tr, st, err := src.History(context.Background(), since, w.clk.Now(), nil)
	if err != nil {
		t.Fatal(err)
	}
	// start is Monday 09:00 UTC: the trace starts at 00:00 that day.
	if want := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC); !st.Start.Equal(want) {
		t.Errorf("trace starts %v, want %v", st.Start, want)
	}
	if st.Pipelines != 2 || st.Jobs != 4 || st.Unfinished != 1 || st.Empty != 0 || st.Projects != 2 || st.ChildrenViaBridges {
		t.Errorf("stats %+v: want 2 pipelines, 4 jobs, 1 unfinished, in 2 projects, from a GitLab that lists children", st)
	}
	type job struct {
		d    time.Duration
		tags string
	}
	var got [][][]job
	var created []time.Duration
	for _, p := range tr.Pipelines {
		created = append(created, p.CreatedAt)
		var stages [][]job
		for _, s := range p.Stages {
			var js []job
			for _, j := range s {
				js = append(js, job{j.Duration, strings.Join(j.Tags, ";")})
			}
			stages = append(stages, js)
		}
		got = append(got, stages)
	}
	want := [][][]job{
		{{{30 * time.Second, "docker"}, {90 * time.Second, "docker"}}, {{time.Minute, "docker;large"}}},
		{{{45 * time.Second, "docker"}}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("pipelines %v, want %v", got, want)
	}
	nine := 9 * time.Hour
	if wantAt := []time.Duration{nine + time.Minute, nine + 2*time.Minute + 500*time.Millisecond}; !reflect.DeepEqual(created, wantAt) {
		t.Errorf("created at %v, want %v", created, wantAt)
	}
	// What it read is a trace the simulator takes.
	var b bytes.Buffer
	if err := trace.Write(&b, tr); err != nil {
		t.Fatal(err)
	}
	if _, err := trace.Parse(&b, "mine"); err != nil {
		t.Fatal(err)
	}

	if _, _, err := src.History(context.Background(), since, since, nil); err == nil {
		t.Error("an empty window: no error")
	}
}

// What the emulator does not do, a scripted GitLab does: retried, manual and
// canceled jobs, a zero duration, a child pipeline listed apart, a pipeline
// still canceling, pages, and projects that refuse to list pipelines, at once
// or part-way.
func TestHistoryOfRealWorldPipelines(t *testing.T) {
	t0 := time.Date(2026, 11, 17, 10, 0, 0, 0, time.UTC) // a Tuesday
	at := func(d time.Duration) string { return t0.Add(d).Format(time.RFC3339) }
	pipeline := func(id int64, status string, created time.Duration) string {
		return fmt.Sprintf(`{"id":%d,"status":%q,"source":"push","created_at":%q,"updated_at":%q}`, id, status, at(created), at(created))
	}
	ran := func(id int64, stage, name, status string, start, secs int, dur float64) string {
		s := time.Duration(start) * time.Second
		return fmt.Sprintf(`{"id":%d,"name":%q,"stage":%q,"status":%q,"started_at":%q,"finished_at":%q,"duration":%v,"tag_list":["docker"],"pipeline":{"id":1}}`,
			id, name, stage, status, at(s), at(s+time.Duration(secs)*time.Second), dur)
	}
	pages := map[string][]string{ // path?query → pages of JSON arrays
		"/api/v4/projects/1/pipelines":                        {"[" + pipeline(10, "success", time.Minute) + "]", "[" + pipeline(11, "canceling", 2*time.Minute) + "]"},
		"/api/v4/projects/1/pipelines?source=parent_pipeline": {"[" + pipeline(12, "success", 3*time.Minute) + "]"},
		// unit failed (100) and was retried (102) after build's job (101) was
		// created; lint was canceled while it ran (duration 0); deploy is manual.
		"/api/v4/projects/1/pipelines/10/jobs?include_retried=true": {
			"[" + ran(100, "test", "unit", "failed", 60, 30, 30) + "," + ran(101, "build", "image", "success", 200, 60, 60) + "]",
			"[" + ran(102, "test", "unit", "success", 100, 40, 40) + "," + `{"id":103,"name":"prod","stage":"deploy","status":"manual","pipeline":{"id":10}}` + "," +
				ran(104, "test", "lint", "canceled", 60, 5, 0) + "]"},
		"/api/v4/projects/1/pipelines/12/jobs?include_retried=true": {"[" + ran(200, "test", "child", "success", 200, 20, 20) + "]"},
		// This GitLab is 16.11: it lists no children, but pipeline 10's
		// trigger job started child pipeline 13, which started none.
		"/api/v4/projects/1/pipelines/10/bridges": {`[{"id":105,"status":"success","downstream_pipeline":` +
			`{"id":13,"project_id":1,"status":"success","created_at":"` + at(5*time.Minute) + `"}}]`},
		"/api/v4/projects/1/pipelines/11/bridges":                   {"[]"},
		"/api/v4/projects/1/pipelines/12/bridges":                   {"[]"},
		"/api/v4/projects/1/pipelines/13/bridges":                   {"[]"},
		"/api/v4/projects/1/pipelines/13/jobs?include_retried=true": {"[" + ran(300, "test", "grandchild", "success", 400, 15, 15) + "]"},
		// Project 3 lists its pipelines, then refuses its child pipelines.
		"/api/v4/projects/3/pipelines": {"[" + pipeline(30, "success", 4*time.Minute) + "]"},
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/v4/version" {
			fmt.Fprint(w, `{"version":"16.11.2-ee","revision":"abc"}`)
			return
		}
		if r.URL.Path == "/api/v4/projects/2/pipelines" || r.URL.Path == "/api/v4/projects/3/pipelines" && r.URL.Query().Get("source") != "" {
			w.WriteHeader(http.StatusForbidden)
			fmt.Fprint(w, `{"message":"403 Forbidden"}`)
			return
		}
		key := r.URL.Path
		for _, q := range []string{"source", "include_retried"} {
			if v := r.URL.Query().Get(q); v != "" {
				key += "?" + q + "=" + v
			}
		}
		ps, ok := pages[key]
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprint(w, `{"message":"404 Not Found"}`)
			return
		}
		page := 1
		fmt.Sscan(r.URL.Query().Get("page"), &page)
		if page < len(ps) {
			w.Header().Set("X-Next-Page", fmt.Sprint(page+1))
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, ps[page-1])
	}))
	t.Cleanup(srv.Close)
	c, err := gitlab.NewClient(token, gitlab.WithBaseURL(srv.URL), gitlab.WithoutRetries())
	if err != nil {
		t.Fatal(err)
	}
	src, err := demand.NewSource(c, demand.Config{Projects: []string{"1", "2", "3"}}, clock.NewVirtual(t0.Add(time.Hour)))
	if err != nil {
		t.Fatal(err)
	}
	tr, st, err := src.History(context.Background(), t0, t0.Add(time.Hour), nil)
	if err != nil {
		t.Fatal(err)
	}
	if st.Unfinished != 1 || !slices.Equal(st.Refused, []int64{2, 3}) || st.Pipelines != 3 || st.Jobs != 5 || !st.ChildrenViaBridges {
		t.Errorf("stats %+v: want pipeline 11 unfinished, projects 2 and 3 refused (3 part-way, so none of its pipelines), 3 pipelines of 5 jobs, children found through bridges", st)
	}
	var got []string
	for _, p := range tr.Pipelines {
		var stages []string
		for _, s := range p.Stages {
			var js []string
			for _, j := range s {
				js = append(js, j.Duration.String())
			}
			stages = append(stages, strings.Join(js, " "))
		}
		got = append(got, fmt.Sprintf("%d@%s: %s", p.ID, p.CreatedAt, strings.Join(stages, " | ")))
	}
	// Pipeline 10: test (unit's two attempts, 30 s + 40 s, and lint's 5 s),
	// then build; the manual deploy is no stage. Pipelines 12 and 13, children
	// listed and found through a trigger job.
	want := []string{"10@34h1m0s: 1m10s 5s | 1m0s", "12@34h3m0s: 20s", "13@34h5m0s: 15s"}
	if !slices.Equal(got, want) {
		t.Errorf("trace %q, want %q", got, want)
	}

	// A window without a finished pipeline is an error that says why.
	if _, _, err := src.History(context.Background(), t0.Add(90*time.Second), t0.Add(150*time.Second), nil); !errors.Is(err, demand.ErrNoPipelines) ||
		!strings.Contains(err.Error(), "1 still running") {
		t.Errorf("a window with only pipeline 11: %v", err)
	}
}

// History reads the pipelines' jobs four at a time, and reports its progress
// one pipeline after another.
func TestHistoryReadsFourPipelinesAtATime(t *testing.T) {
	w := newWorld(t)
	since := w.clk.Now()
	for range 12 {
		w.pipeline(t, w.web, 1, time.Minute, "docker")
	}
	if err := w.gl.RegisterManager(w.docker.Token, "s_docker", glemu.ManagerOptions{Capacity: 12}); err != nil {
		t.Fatal(err)
	}
	w.clk.Advance(5 * time.Minute)

	// In front of the emulator: how many job listings are in flight at once.
	var mu sync.Mutex
	inFlight, most := 0, 0
	jobsPath := regexp.MustCompile(`/pipelines/\d+/jobs$`)
	front := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if jobsPath.MatchString(r.URL.Path) {
			mu.Lock()
			inFlight++
			most = max(most, inFlight)
			mu.Unlock()
			time.Sleep(20 * time.Millisecond) // a real GitLab's latency
			defer func() { mu.Lock(); inFlight--; mu.Unlock() }()
		}
		w.gl.ServeHTTP(rw, r)
	}))
	defer front.Close()
	c, err := gitlab.NewClient(token, gitlab.WithBaseURL(front.URL), gitlab.WithoutRetries())
	if err != nil {
		t.Fatal(err)
	}
	src, err := demand.NewSource(c, demand.Config{Projects: []string{fmt.Sprint(w.web)}}, w.clk)
	if err != nil {
		t.Fatal(err)
	}
	var seen []int
	tr, _, err := src.History(context.Background(), since, w.clk.Now(), func(done, total int) {
		if total != 12 {
			t.Errorf("progress total %d, want 12", total)
		}
		seen = append(seen, done)
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(tr.Pipelines) != 12 {
		t.Fatalf("%d pipelines read, want 12", len(tr.Pipelines))
	}
	mu.Lock()
	defer mu.Unlock()
	if most < 2 || most > 4 { // 4 unless the machine is very slow
		t.Errorf("at most %d pipelines read at once, want up to 4 in parallel", most)
	}
	if want := []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}; !slices.Equal(seen, want) {
		t.Errorf("progress %v, want %v", seen, want)
	}
}
