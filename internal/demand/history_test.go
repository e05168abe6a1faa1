package demand_test

import (
	"bytes"
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

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
	if st.Pipelines != 2 || st.Jobs != 4 || st.Unfinished != 1 || st.Empty != 0 || st.Projects != 2 {
		t.Errorf("stats %+v: want 2 pipelines, 4 jobs, 1 unfinished, in 2 projects", st)
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
