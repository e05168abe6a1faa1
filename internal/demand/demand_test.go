package demand_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	gitlab "gitlab.com/gitlab-org/api/client-go"

	"github.com/shoalci/shoal/internal/clock"
	"github.com/shoalci/shoal/internal/demand"
	"github.com/shoalci/shoal/internal/glemu"
)

var start = time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)

const token = "glpat-demand"

type world struct {
	gl     *glemu.Server
	clk    *clock.Virtual
	url    string
	docker glemu.Runner
	large  glemu.Runner
	acme   int64 // group
	back   int64 // group acme/backend
	web    int64 // project in acme
	api    int64 // project in acme/backend
}

func newWorld(t *testing.T) *world { return newWorldWith(t, glemu.Options{}) }

func newWorldWith(t *testing.T, opts glemu.Options) *world {
	t.Helper()
	clk := clock.NewVirtual(start)
	opts.Clock, opts.Tokens, opts.Logger = clk, []string{token}, slog.New(slog.DiscardHandler)
	gl := glemu.New(opts)
	t.Cleanup(gl.Close)
	srv := httptest.NewServer(gl)
	t.Cleanup(srv.Close)
	w := &world{gl: gl, clk: clk, url: srv.URL}
	var err error
	if w.acme, err = gl.AddGroup("acme", 0); err != nil {
		t.Fatal(err)
	}
	if w.back, err = gl.AddGroup("backend", w.acme); err != nil {
		t.Fatal(err)
	}
	if w.web, err = gl.AddProject("web", w.acme); err != nil {
		t.Fatal(err)
	}
	if w.api, err = gl.AddProject("api", w.back); err != nil {
		t.Fatal(err)
	}
	if w.docker, err = gl.CreateRunner(glemu.RunnerSpec{Description: "docker", Tags: []string{"docker"}}); err != nil {
		t.Fatal(err)
	}
	if w.large, err = gl.CreateRunner(glemu.RunnerSpec{Description: "large", Tags: []string{"docker", "large"}}); err != nil {
		t.Fatal(err)
	}
	return w
}

func (w *world) client(t *testing.T, tok string) *gitlab.Client {
	t.Helper()
	c, err := gitlab.NewClient(tok, gitlab.WithBaseURL(w.url), gitlab.WithoutRetries())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (w *world) pipeline(t *testing.T, project int64, n int, d time.Duration, tags ...string) glemu.PipelineRef {
	t.Helper()
	specs := make([]glemu.JobSpec, n)
	for i := range specs {
		specs[i] = glemu.JobSpec{Duration: d, Tags: tags}
	}
	ref, err := w.gl.CreatePipeline(project, []glemu.StageSpec{{Name: "test", Jobs: specs}})
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

func TestSnapshot(t *testing.T) {
	w := newWorld(t)
	// A two-stage pipeline first: its build jobs wait, created, for its test
	// job, which runs.
	staged, err := w.gl.CreatePipeline(w.api, []glemu.StageSpec{
		{Name: "test", Jobs: []glemu.JobSpec{{Duration: time.Hour, Tags: []string{"docker"}}}},
		{Name: "build", Jobs: []glemu.JobSpec{{Duration: time.Hour, Tags: []string{"docker", "large"}}, {Duration: time.Hour, Tags: []string{"docker"}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	// 130 docker jobs in web (more than one page), then 3 large jobs in api, 10 s later.
	w.pipeline(t, w.web, 130, time.Hour, "docker")
	w.clk.Advance(10 * time.Second)
	w.pipeline(t, w.api, 3, time.Hour, "docker", "large")
	// Managers with 2, 3, 1 and 1 slots all fill up at their first tick; the
	// large one takes the oldest job it may run, a docker one.
	for _, m := range []struct {
		r   glemu.Runner
		sys string
		cap int
	}{{w.docker, "s_d1", 2}, {w.docker, "s_d2", 3}, {w.large, "s_l1", 1}, {w.docker, "s_idle", 1}} {
		if err := w.gl.RegisterManager(m.r.Token, m.sys, glemu.ManagerOptions{Capacity: m.cap}); err != nil {
			t.Fatal(err)
		}
	}
	w.clk.Advance(3 * time.Second)
	if err := w.gl.Pause(w.docker.Token, "s_idle"); err != nil {
		t.Fatal(err)
	}
	src, err := demand.NewSource(w.client(t, token), demand.Config{
		Groups:    []string{"acme"},
		RunnerIDs: []int64{w.docker.ID, w.large.ID},
	}, w.clk)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := src.Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}

	truth := w.gl.PendingJobs()
	if len(snap.Pending) != len(truth) || len(truth) < 100 {
		t.Fatalf("snapshot has %d pending jobs, emulator %d (want > 100 to cross pages)", len(snap.Pending), len(truth))
	}
	for i, j := range snap.Pending {
		want := truth[i]
		if j.ID != want.ID || !j.QueuedAt.Equal(want.QueuedAt) || !slices.Equal(j.Tags, want.Tags) || j.ProjectID != want.ProjectID {
			t.Fatalf("pending[%d] = %+v, want job %d queued %v tags %v project %d", i, j, want.ID, want.QueuedAt, want.Tags, want.ProjectID)
		}
	}
	if n := len(snap.PendingByTags["docker;large"]); n != 3 {
		t.Errorf("docker;large pending = %d, want 3", n)
	}
	if n := len(snap.PendingByTags["docker"]); n != len(truth)-3 {
		t.Errorf("docker pending = %d, want %d", n, len(truth)-3)
	}

	if len(snap.Managers) != 4 {
		t.Fatalf("managers = %+v, want 4", snap.Managers)
	}
	running := 0
	for _, m := range w.gl.Managers() {
		got := snap.RunningBySystemID[m.SystemID]
		if len(got) != m.Running {
			t.Errorf("manager %s: snapshot says %d running, emulator %d", m.SystemID, len(got), m.Running)
		}
		running += len(got)
		for _, j := range got {
			if j.StartedAt.IsZero() || j.StartedAt.After(snap.At) {
				t.Errorf("running job %d started %v, after the snapshot", j.ID, j.StartedAt)
			}
		}
	}
	if running != 7 {
		t.Errorf("%d running jobs in all, want 7 (2+3+1+1 slots)", running)
	}
	registered := w.clk.Now().Add(-3 * time.Second)
	for _, m := range snap.Managers {
		if m.Status != "online" || m.ContactedAt.IsZero() || !m.CreatedAt.Equal(registered) {
			t.Errorf("manager %+v: want online, contacted, registered at %v", m, registered)
		}
	}

	// Created: the jobs waiting for their pipeline's earlier stages.
	var want []int64
	for _, j := range w.gl.Jobs() {
		if j.Status == glemu.StatusCreated {
			want = append(want, j.ID)
		}
	}
	var got []int64
	for _, j := range snap.Created {
		got = append(got, j.ID)
		if j.PipelineID != staged.ID || j.CreatedAt.IsZero() || len(j.Tags) == 0 {
			t.Errorf("created job %+v, want one of pipeline %d's build jobs", j, staged.ID)
		}
	}
	slices.Sort(got)
	if !slices.Equal(got, want) || len(want) != 2 {
		t.Errorf("created %v, want %v (the 2 build jobs)", got, want)
	}

	// The drain check: one manager's running jobs.
	d2, err := src.RunningJobs(context.Background(), w.docker.ID, "s_d2")
	if err != nil || len(d2) != 3 {
		t.Errorf("RunningJobs(s_d2) = %v, %v; want 3", d2, err)
	}
	if _, err := src.RunningJobs(context.Background(), w.docker.ID, ""); err == nil {
		t.Error("RunningJobs with an empty system_id succeeded")
	}
}

func TestSnapshotProjectsByPathAndGroupRefresh(t *testing.T) {
	w := newWorld(t)
	src, err := demand.NewSource(w.client(t, token), demand.Config{
		Projects:     []string{"acme/web"},
		Groups:       []string{"acme/backend"},
		GroupRefresh: time.Minute,
	}, w.clk)
	if err != nil {
		t.Fatal(err)
	}
	w.pipeline(t, w.web, 1, time.Minute, "docker")
	w.pipeline(t, w.api, 2, time.Minute, "docker")
	snap, err := src.Snapshot(context.Background())
	if err != nil || len(snap.Pending) != 3 {
		t.Fatalf("pending = %d, %v; want 3 (1 by project path, 2 by group)", len(snap.Pending), err)
	}

	// A project created in the group shows up once the cached listing expires.
	late, err := w.gl.AddProject("late", w.back)
	if err != nil {
		t.Fatal(err)
	}
	w.pipeline(t, late, 1, time.Minute, "docker")
	snap, _ = src.Snapshot(context.Background())
	if len(snap.Pending) != 3 {
		t.Errorf("pending = %d right after the project appeared, want 3 (group listing cached)", len(snap.Pending))
	}
	w.clk.Advance(time.Minute)
	snap, _ = src.Snapshot(context.Background())
	if len(snap.Pending) != 4 {
		t.Errorf("pending = %d after the refresh interval, want 4", len(snap.Pending))
	}
}

func TestSnapshotErrors(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()

	src, err := demand.NewSource(w.client(t, "glpat-wrong"), demand.Config{Projects: []string{"1"}}, w.clk)
	if err != nil {
		t.Fatal(err)
	}
	_, err = src.Snapshot(ctx)
	var er *gitlab.ErrorResponse
	if !errors.As(err, &er) || er.Response.StatusCode != http.StatusUnauthorized || !strings.Contains(err.Error(), "project 1") || !strings.Contains(err.Error(), "GITLAB_TOKEN") {
		t.Errorf("bad token: err = %v, want a 401 naming project 1 and GITLAB_TOKEN", err)
	}

	src, _ = demand.NewSource(w.client(t, token), demand.Config{Groups: []string{"nope"}}, w.clk)
	if _, err := src.Snapshot(ctx); !errors.Is(err, gitlab.ErrNotFound) || !strings.Contains(err.Error(), "group nope") {
		t.Errorf("missing group: err = %v, want ErrNotFound naming the group", err)
	}
	src, _ = demand.NewSource(w.client(t, token), demand.Config{Projects: []string{"1"}, RunnerIDs: []int64{99}}, w.clk)
	if _, err := src.Snapshot(ctx); !errors.Is(err, gitlab.ErrNotFound) || !strings.Contains(err.Error(), "runner 99") {
		t.Errorf("missing runner: err = %v, want ErrNotFound naming the runner", err)
	}
	if _, err := demand.NewSource(w.client(t, token), demand.Config{}, w.clk); err == nil {
		t.Error("a source with nothing to watch was accepted")
	}
}

// The simulator's path: client-go over the emulator's in-process transport.
func TestSnapshotInProcessTransport(t *testing.T) {
	w := newWorld(t)
	c, err := gitlab.NewClient(token, gitlab.WithBaseURL("http://glemu.invalid"),
		gitlab.WithHTTPClient(&http.Client{Transport: w.gl.Transport()}), gitlab.WithoutRetries())
	if err != nil {
		t.Fatal(err)
	}
	// Stage 1 becomes pending when stage 0 ends, at a time set by the
	// manager's tick: queue times are not on whole seconds.
	for range 60 {
		if _, err := w.gl.CreatePipeline(w.web, []glemu.StageSpec{
			{Jobs: []glemu.JobSpec{{Duration: 1700 * time.Millisecond, Tags: []string{"docker"}}}},
			{Jobs: []glemu.JobSpec{{Duration: time.Minute, Tags: []string{"docker"}}, {Duration: time.Minute, Tags: []string{"docker"}}}},
		}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.gl.RegisterManager(w.docker.Token, "s_big", glemu.ManagerOptions{Capacity: 100}); err != nil {
		t.Fatal(err)
	}
	w.clk.Advance(7 * time.Second)
	src, _ := demand.NewSource(c, demand.Config{Projects: []string{"acme/web"}, RunnerIDs: []int64{w.docker.ID}}, w.clk)
	snap, err := src.Snapshot(context.Background())
	if err != nil || len(snap.Pending) != 20 {
		t.Fatalf("pending = %d, %v; want 20 (120 stage-1 jobs, 100 of them taken)", len(snap.Pending), err)
	}
	truth := w.gl.PendingJobs()
	for i, j := range snap.Pending {
		if j.ID != truth[i].ID || !j.QueuedAt.Equal(truth[i].QueuedAt) || j.QueuedAt.Nanosecond() == 0 {
			t.Fatalf("pending[%d] = job %d queued %v, want job %d queued %v", i, j.ID, j.QueuedAt, truth[i].ID, truth[i].QueuedAt)
		}
	}
	if n := len(snap.RunningBySystemID["s_big"]); n != 100 {
		t.Errorf("s_big runs %d jobs, want 100", n)
	}
}

// A GitLab whose job entities lack runner_manager is asked manager by manager.
func TestSnapshotWithoutRunnerManager(t *testing.T) {
	for _, omit := range []bool{false, true} {
		w := newWorldWith(t, glemu.Options{NoRunnerManagerInJobs: omit})
		w.pipeline(t, w.web, 9, time.Hour, "docker")
		for i, capacity := range []int{1, 2, 3} {
			if err := w.gl.RegisterManager(w.docker.Token, fmt.Sprintf("s_%d", i), glemu.ManagerOptions{Capacity: capacity}); err != nil {
				t.Fatal(err)
			}
		}
		w.clk.Advance(3 * time.Second)
		src, _ := demand.NewSource(w.client(t, token), demand.Config{Projects: []string{"1"}, RunnerIDs: []int64{w.docker.ID}}, w.clk)
		snap, err := src.Snapshot(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			if n := len(snap.RunningBySystemID[fmt.Sprintf("s_%d", i)]); n != i+1 {
				t.Errorf("runner_manager omitted %v: s_%d runs %d jobs, want %d", omit, i, n, i+1)
			}
		}
		if len(snap.Pending) != 3 {
			t.Errorf("runner_manager omitted %v: %d pending, want 3", omit, len(snap.Pending))
		}
	}
}

// clientBehind returns a client reading GitLab through intercept, which
// answers a request itself by returning true, as a proxy in front of GitLab
// would. Handlers run one at a time.
func (w *world) clientBehind(t *testing.T, intercept func(http.ResponseWriter, *http.Request) bool, opts ...gitlab.ClientOptionFunc) *gitlab.Client {
	t.Helper()
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if !intercept(rw, r) {
			w.gl.ServeHTTP(rw, r)
		}
	}))
	t.Cleanup(srv.Close)
	c, err := gitlab.NewClient(token, append([]gitlab.ClientOptionFunc{gitlab.WithBaseURL(srv.URL), gitlab.WithoutRetries()}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// webSourceBehind returns a Source of the web project that reads GitLab
// through intercept (see clientBehind).
func (w *world) webSourceBehind(t *testing.T, intercept func(http.ResponseWriter, *http.Request) bool) *demand.Source {
	t.Helper()
	src, err := demand.NewSource(w.clientBehind(t, intercept), demand.Config{Projects: []string{fmt.Sprint(w.web)}}, w.clk)
	if err != nil {
		t.Fatal(err)
	}
	return src
}

// fail answers a request with a GitLab-shaped error.
func fail(rw http.ResponseWriter, status int) bool {
	rw.Header().Set("Content-Type", "application/json")
	rw.WriteHeader(status)
	fmt.Fprintf(rw, `{"message":"%d %s"}`, status, http.StatusText(status))
	return true
}

// jobLists counts GET /projects/:id/jobs per project ID (as it appears in
// the path); read it only between requests.
type jobLists map[string]int

func (n jobLists) count(r *http.Request) {
	if id, ok := strings.CutPrefix(r.URL.Path, "/api/v4/projects/"); ok && strings.HasSuffix(id, "/jobs") && !strings.Contains(id, "/pipelines/") {
		n[strings.TrimSuffix(id, "/jobs")]++
	}
}

func pendingOf(snap demand.Snapshot, project int64) int {
	n := 0
	for _, j := range snap.Pending {
		if j.ProjectID == project {
			n++
		}
	}
	return n
}

// problemsAbout returns the problems that mention all of words.
func problemsAbout(snap demand.Snapshot, words ...string) []string {
	var out []string
	for _, p := range snap.Problems {
		if !slices.ContainsFunc(words, func(w string) bool { return !strings.Contains(p, w) }) {
			out = append(out, p)
		}
	}
	return out
}

// createdIDs takes a Snapshot and returns the IDs of its created jobs, sorted.
func createdIDs(t *testing.T, src *demand.Source) []int64 {
	t.Helper()
	snap, err := src.Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var got []int64
	for _, j := range snap.Created {
		got = append(got, j.ID)
	}
	slices.Sort(got)
	return got
}

// Created lists each pipeline's next stage only. Every project is read
// again when the last read is a minute old; in between, a pipeline is read
// when it is new with jobs pending or a stage it lists has begun.
func TestSnapshotCreatedJobs(t *testing.T) {
	w := newWorld(t)
	var reads []string // "project" or "pipeline N"
	src := w.webSourceBehind(t, func(rw http.ResponseWriter, r *http.Request) bool {
		if slices.Contains(r.URL.Query()["scope[]"], "created") {
			if _, pl, ok := strings.Cut(r.URL.Path, "/pipelines/"); ok {
				reads = append(reads, "pipeline "+strings.TrimSuffix(pl, "/jobs"))
			} else {
				reads = append(reads, "project")
			}
		}
		return false
	})
	// test (30 s) → build (1 min, two jobs) → deploy.
	threeStages := func() glemu.PipelineRef {
		ref, err := w.gl.CreatePipeline(w.web, []glemu.StageSpec{
			{Name: "test", Jobs: []glemu.JobSpec{{Duration: 30 * time.Second, Tags: []string{"docker"}}}},
			{Name: "build", Jobs: []glemu.JobSpec{{Duration: time.Minute, Tags: []string{"docker", "large"}}, {Duration: time.Minute, Tags: []string{"docker"}}}},
			{Name: "deploy", Jobs: []glemu.JobSpec{{Duration: time.Minute, Tags: []string{"docker"}}}},
		})
		if err != nil {
			t.Fatal(err)
		}
		return ref
	}
	look := func(wantReads []string, want ...int64) {
		t.Helper()
		got := createdIDs(t, src)
		slices.Sort(want)
		if !slices.Equal(got, want) || !slices.Equal(reads, wantReads) {
			t.Fatalf("at %s: created %v after reads %q, want %v after %q", w.clk.Since(start), got, reads, want, wantReads)
		}
	}
	a := threeStages()
	aBuild := a.JobIDs[1]
	look([]string{"project"}, aBuild...) // the builds, not the deploy
	w.clk.Advance(10 * time.Second)
	look([]string{"project"}, aBuild...) // nothing new: the last read stands
	b := threeStages()
	bPipeline := fmt.Sprint("pipeline ", b.ID)
	look([]string{"project", bPipeline}, append(slices.Clone(aBuild), b.JobIDs[1]...)...) // b's test is pending: b is read
	w.clk.Advance(time.Minute)
	look([]string{"project", bPipeline, "project"}, append(slices.Clone(aBuild), b.JobIDs[1]...)...) // a minute old: all is read

	// One slot: a's test runs and ends, and its builds are pending: the stage
	// has begun, so the list is read again and has a's deploy instead.
	if err := w.gl.RegisterManager(w.docker.Token, "s_one", glemu.ManagerOptions{Capacity: 1}); err != nil {
		t.Fatal(err)
	}
	w.clk.Advance(40 * time.Second)
	look([]string{"project", bPipeline, "project", fmt.Sprint("pipeline ", a.ID)}, append(slices.Clone(a.JobIDs[2]), b.JobIDs[1]...)...)
}

// A failed read of one moved pipeline loses no other: the next Snapshot reads
// them all again. A pipeline deleted meanwhile (404) has nothing to come.
func TestSnapshotCreatedJobsAfterAFailedRead(t *testing.T) {
	w := newWorld(t)
	failPipeline, failStatus := "", 0
	src := w.webSourceBehind(t, func(rw http.ResponseWriter, r *http.Request) bool {
		if failPipeline == "" || !strings.Contains(r.URL.Path, "/pipelines/"+failPipeline+"/") {
			return false
		}
		failPipeline = ""
		rw.Header().Set("Content-Type", "application/json")
		rw.WriteHeader(failStatus)
		fmt.Fprintf(rw, `{"message":"%d %s"}`, failStatus, http.StatusText(failStatus))
		return true
	})
	twoStages := func() glemu.PipelineRef {
		ref, err := w.gl.CreatePipeline(w.web, []glemu.StageSpec{
			{Name: "test", Jobs: []glemu.JobSpec{{Duration: time.Minute, Tags: []string{"docker"}}}},
			{Name: "build", Jobs: []glemu.JobSpec{{Duration: time.Minute, Tags: []string{"docker"}}}},
		})
		if err != nil {
			t.Fatal(err)
		}
		return ref
	}
	if _, err := src.Snapshot(context.Background()); err != nil { // the first, full read
		t.Fatal(err)
	}
	b, cp := twoStages(), twoStages()
	failPipeline, failStatus = fmt.Sprint(cp.ID), http.StatusInternalServerError
	if _, err := src.Snapshot(context.Background()); err == nil {
		t.Fatal("a failed read of a pipeline's created jobs gave no error")
	}
	if got, want := createdIDs(t, src), []int64{b.JobIDs[1][0], cp.JobIDs[1][0]}; !slices.Equal(got, want) {
		t.Fatalf("created %v after a failed read, want both builds %v", got, want)
	}
	d := twoStages()
	failPipeline, failStatus = fmt.Sprint(d.ID), http.StatusNotFound
	if got, want := createdIDs(t, src), []int64{b.JobIDs[1][0], cp.JobIDs[1][0]}; !slices.Equal(got, want) {
		t.Fatalf("created %v with a pipeline gone, want the other two builds %v", got, want)
	}
}

// MaxPending caps the pending queue only: every manager and every running job
// is read, or a drain could take a busy runner for an idle one.
func TestSnapshotReadsEveryManagerAndRunningJob(t *testing.T) {
	w := newWorld(t)
	w.pipeline(t, w.web, 150, time.Hour, "docker")
	for i := range 150 {
		if err := w.gl.RegisterManager(w.docker.Token, fmt.Sprintf("s_%03d", i), glemu.ManagerOptions{Capacity: 1}); err != nil {
			t.Fatal(err)
		}
	}
	w.clk.Advance(3 * time.Second)
	src, err := demand.NewSource(w.client(t, token), demand.Config{Projects: []string{fmt.Sprint(w.web)},
		RunnerIDs: []int64{w.docker.ID}, MaxPending: 100}, w.clk)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := src.Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	running := 0
	for _, js := range snap.RunningBySystemID {
		running += len(js)
	}
	if len(snap.Managers) != 150 || running != 150 {
		t.Fatalf("%d managers and %d running jobs read, want 150 and 150", len(snap.Managers), running)
	}
}

// A project that refuses its job list (CI/CD off: 403; gone: 404) is left
// out and reported, the others are read, and it is not asked again until the
// next project refresh.
func TestSnapshotLeavesOutRefusedProjects(t *testing.T) {
	w := newWorld(t)
	handbook, err := w.gl.AddProject("handbook", w.acme)
	if err != nil {
		t.Fatal(err)
	}
	w.pipeline(t, handbook, 1, time.Hour, "docker")
	if err := w.gl.SetCICD(handbook, false); err != nil {
		t.Fatal(err)
	}
	w.pipeline(t, w.web, 2, time.Hour, "docker")
	w.pipeline(t, w.api, 1, time.Hour, "docker")
	lists := jobLists{}
	c := w.clientBehind(t, func(_ http.ResponseWriter, r *http.Request) bool { lists.count(r); return false })
	src, err := demand.NewSource(c, demand.Config{Groups: []string{"acme"}, Projects: []string{"999"}}, w.clk)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	h := fmt.Sprint(handbook)
	for i, step := range []struct {
		advance     time.Duration
		lists       int // job lists of 999, and of handbook, so far
		handbookJob int // handbook's pending jobs in the snapshot
	}{
		{0, 1, 0},
		{time.Minute, 1, 0},     // remembered as refused: not asked
		{4 * time.Minute, 2, 0}, // the project refresh: asked again, still refused
		{5 * time.Minute, 3, 2}, // CI/CD back on (below): read, and its created jobs too
	} {
		if i == 3 {
			if err := w.gl.SetCICD(handbook, true); err != nil {
				t.Fatal(err)
			}
			w.pipeline(t, handbook, 1, time.Hour, "docker")
		}
		w.clk.Advance(step.advance)
		snap, err := src.Snapshot(ctx)
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if pendingOf(snap, w.web) != 2 || pendingOf(snap, w.api) != 1 || pendingOf(snap, handbook) != step.handbookJob {
			t.Errorf("step %d: pending web %d, api %d, handbook %d; want 2, 1, %d", i,
				pendingOf(snap, w.web), pendingOf(snap, w.api), pendingOf(snap, handbook), step.handbookJob)
		}
		wantH := step.lists
		if step.handbookJob > 0 {
			wantH++
		}
		if lists[h] != wantH || lists["999"] != step.lists {
			t.Errorf("step %d: job lists of handbook %d, of 999 %d; want %d and %d", i, lists[h], lists["999"], wantH, step.lists)
		}
		refusedNow := step.handbookJob == 0
		if got := problemsAbout(snap, "acme/handbook", "403", "CI/CD"); (len(got) == 1) != refusedNow {
			t.Errorf("step %d: problems %q, want one about handbook's 403: %v", i, snap.Problems, refusedNow)
		}
		if got := problemsAbout(snap, "project 999", "404"); len(got) != 1 {
			t.Errorf("step %d: problems %q, want one about project 999's 404", i, snap.Problems)
		}
		if src.Touch(handbook) == refusedNow {
			t.Errorf("step %d: Touch(handbook) = %v while refused = %v", i, !refusedNow, refusedNow)
		}
	}

	// With every project refused, there is nothing to decide on.
	only, _ := demand.NewSource(w.client(t, token), demand.Config{Projects: []string{"999", "998"}}, w.clk)
	if _, err := only.Snapshot(ctx); !errors.Is(err, gitlab.ErrNotFound) || !strings.Contains(err.Error(), "project 999") {
		t.Errorf("every project refused: err = %v, want ErrNotFound naming project 999", err)
	}
}

// On another error a project's last read stands in; one never read is left
// out; with no project read at all, Snapshot fails.
func TestSnapshotKeepsLastReadOnErrors(t *testing.T) {
	w := newWorld(t)
	broken, err := w.gl.AddProject("broken", w.acme)
	if err != nil {
		t.Fatal(err)
	}
	failing := map[string]bool{fmt.Sprint(broken): true}
	intercept := func(rw http.ResponseWriter, r *http.Request) bool {
		for id := range failing {
			if strings.HasPrefix(r.URL.Path, "/api/v4/projects/"+id+"/jobs") {
				return fail(rw, http.StatusBadGateway)
			}
		}
		return false
	}
	src, err := demand.NewSource(w.clientBehind(t, intercept), demand.Config{
		Projects: []string{fmt.Sprint(w.web), fmt.Sprint(w.api), fmt.Sprint(broken)}}, w.clk)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	w.pipeline(t, w.web, 1, time.Hour, "docker")
	w.pipeline(t, w.api, 1, time.Hour, "docker")
	snap, err := src.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Pending) != 2 || len(problemsAbout(snap, fmt.Sprintf("project %d", broken), "502", "left out")) != 1 {
		t.Errorf("pending %d, problems %q; want 2, and broken (502) left out", len(snap.Pending), snap.Problems)
	}

	// api fails too: its last read stands in, web's is fresh.
	failing[fmt.Sprint(w.api)] = true
	w.pipeline(t, w.web, 1, time.Hour, "docker")
	w.pipeline(t, w.api, 1, time.Hour, "docker")
	w.clk.Advance(10 * time.Second)
	snap, err = src.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if pendingOf(snap, w.web) != 2 || pendingOf(snap, w.api) != 1 {
		t.Errorf("pending web %d, api %d; want 2 (fresh) and 1 (the last read)", pendingOf(snap, w.web), pendingOf(snap, w.api))
	}
	readAt := w.clk.Now().Add(-10 * time.Second).UTC().Format(time.TimeOnly)
	if got := problemsAbout(snap, fmt.Sprintf("project %d", w.api), "502", "as read at "+readAt); len(got) != 1 {
		t.Errorf("problems %q, want api's read of %s standing in", snap.Problems, readAt)
	}
	// A problem that lasts reads the same at the next poll: it is logged once.
	w.clk.Advance(15 * time.Second)
	again, err := src.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(again.Problems, snap.Problems) {
		t.Errorf("the same problems read differently 15 s later:\n%q\n%q", snap.Problems, again.Problems)
	}

	// All fail: the earlier reads stand in.
	failing[fmt.Sprint(w.web)] = true
	if snap, err = src.Snapshot(ctx); err != nil || len(snap.Pending) != 3 {
		t.Errorf("all failing after earlier reads: %d pending, %v; want the last 3", len(snap.Pending), err)
	}
	// Until they are too old to stand for the queue.
	w.clk.Advance(10 * time.Minute)
	if _, err := src.Snapshot(ctx); err == nil {
		t.Error("all failing for 10 minutes: the reads of 10 minutes ago still stood in")
	}
	delete(failing, fmt.Sprint(w.web))
	if snap, err = src.Snapshot(ctx); err != nil || len(problemsAbout(snap, fmt.Sprintf("project %d", w.api), "last read at "+readAt)) != 1 {
		t.Errorf("api's read too old to stand in: problems %q, %v; want it said when api was last read", snap.Problems, err)
	}
	failing[fmt.Sprint(w.web)] = true
	// A Source that never read any: nothing to decide on.
	fresh, _ := demand.NewSource(w.clientBehind(t, intercept), demand.Config{
		Projects: []string{fmt.Sprint(w.web), fmt.Sprint(broken)}}, w.clk)
	var er *gitlab.ErrorResponse
	if _, err := fresh.Snapshot(ctx); !errors.As(err, &er) || er.Response.StatusCode != http.StatusBadGateway {
		t.Errorf("no project ever read: err = %v, want the 502", err)
	}
}

// A token GitLab refuses (revoked, expired: 401) fails the Snapshot at once:
// earlier reads do not stand in, every other read would fail the same way.
func TestSnapshotFailsOnARefusedToken(t *testing.T) {
	w := newWorld(t)
	revoked := false
	src := w.webSourceBehind(t, func(rw http.ResponseWriter, r *http.Request) bool {
		// Only the job lists say so here; in GitLab every request would.
		return revoked && strings.HasSuffix(r.URL.Path, "/jobs") && fail(rw, http.StatusUnauthorized)
	})
	ctx := context.Background()
	w.pipeline(t, w.web, 1, time.Hour, "docker")
	if _, err := src.Snapshot(ctx); err != nil {
		t.Fatal(err)
	}
	revoked = true
	w.clk.Advance(10 * time.Second)
	var er *gitlab.ErrorResponse
	if snap, err := src.Snapshot(ctx); !errors.As(err, &er) || er.Response.StatusCode != http.StatusUnauthorized {
		t.Errorf("token refused: %d pending, err %v; want the 401", len(snap.Pending), err)
	}
}

// A failed refresh of a group's projects or of a project's path keeps the
// last list; with no last list it is an error.
func TestSnapshotGroupRefreshFailureKeepsTheList(t *testing.T) {
	w := newWorld(t)
	down := false
	intercept := func(rw http.ResponseWriter, r *http.Request) bool {
		if down && (strings.HasPrefix(r.URL.Path, "/api/v4/groups/") || r.URL.Path == "/api/v4/projects/acme/web") {
			return fail(rw, http.StatusServiceUnavailable)
		}
		return false
	}
	cfg := demand.Config{Projects: []string{"acme/web"}, Groups: []string{"acme/backend"}, GroupRefresh: time.Minute}
	src, _ := demand.NewSource(w.clientBehind(t, intercept), cfg, w.clk)
	w.pipeline(t, w.web, 1, time.Hour, "docker")
	w.pipeline(t, w.api, 1, time.Hour, "docker")
	ctx := context.Background()
	if snap, err := src.Snapshot(ctx); err != nil || len(snap.Pending) != 2 {
		t.Fatalf("pending %d, %v; want 2", len(snap.Pending), err)
	}

	down = true
	late, err := w.gl.AddProject("late", w.back)
	if err != nil {
		t.Fatal(err)
	}
	w.pipeline(t, late, 1, time.Hour, "docker")
	w.clk.Advance(time.Minute)
	snap, err := src.Snapshot(ctx)
	if err != nil || len(snap.Pending) != 2 {
		t.Fatalf("refresh failing: pending %d, %v; want the 2 of the last lists", len(snap.Pending), err)
	}
	if len(problemsAbout(snap, "group acme/backend", "503")) != 1 || len(problemsAbout(snap, "project acme/web", "503")) != 1 {
		t.Errorf("problems %q, want the group's and the project's failed refresh", snap.Problems)
	}
	down = false
	if snap, err = src.Snapshot(ctx); err != nil || len(snap.Pending) != 3 || len(snap.Problems) != 0 {
		t.Errorf("refresh back: pending %d, problems %q, %v; want 3 (late's job too) and none", len(snap.Pending), snap.Problems, err)
	}

	down = true
	fresh, _ := demand.NewSource(w.clientBehind(t, intercept), cfg, w.clk)
	if _, err := fresh.Snapshot(ctx); err == nil || !strings.Contains(err.Error(), "503") {
		t.Errorf("no list ever read: err = %v, want the 503", err)
	}
}

// A group's runners are not for projects merely shared with it, and
// archived projects run no jobs: neither is watched.
func TestSnapshotWatchesOnlyTheGroupsOwnActiveProjects(t *testing.T) {
	w := newWorld(t)
	other, err := w.gl.AddGroup("other", 0)
	if err != nil {
		t.Fatal(err)
	}
	lib, err := w.gl.AddProject("lib", other)
	if err != nil {
		t.Fatal(err)
	}
	old, err := w.gl.AddProject("old", w.back)
	if err != nil {
		t.Fatal(err)
	}
	for _, err := range []error{w.gl.ShareProject(lib, w.acme), w.gl.ArchiveProject(old)} {
		if err != nil {
			t.Fatal(err)
		}
	}
	w.pipeline(t, lib, 2, time.Hour, "docker")
	w.pipeline(t, w.api, 1, time.Hour, "docker")
	lists := jobLists{}
	c := w.clientBehind(t, func(_ http.ResponseWriter, r *http.Request) bool { lists.count(r); return false })
	src, _ := demand.NewSource(c, demand.Config{Groups: []string{"acme"}}, w.clk)
	snap, err := src.Snapshot(context.Background())
	if err != nil || len(snap.Pending) != 1 || pendingOf(snap, w.api) != 1 {
		t.Fatalf("pending %+v, %v; want api's job only", snap.Pending, err)
	}
	if lists[fmt.Sprint(lib)]+lists[fmt.Sprint(old)] != 0 {
		t.Errorf("job lists of the shared and the archived project: %v, want none", lists)
	}
	for _, tt := range []struct {
		project int64
		watched bool
	}{{w.web, true}, {w.api, true}, {lib, false}, {old, false}} {
		if got := src.Touch(tt.project); got != tt.watched {
			t.Errorf("Touch(%d) = %v, want %v", tt.project, got, tt.watched)
		}
	}
}
