package glemu_test

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	retryablehttp "github.com/hashicorp/go-retryablehttp"
	gitlab "gitlab.com/gitlab-org/api/client-go"

	"github.com/shoalci/shoal/internal/clock"
	"github.com/shoalci/shoal/internal/glemu"
)

func serve(t testing.TB, s *glemu.Server) *gitlab.Client {
	t.Helper()
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	c, err := gitlab.NewClient("glpat-test", gitlab.WithBaseURL(srv.URL), gitlab.WithoutRetries())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestAPIProjectsAndGroups(t *testing.T) {
	s, _ := newEmu(t)
	acme := must[int64](t)(s.AddGroup("acme", 0))
	backend := must[int64](t)(s.AddGroup("backend", acme))
	web := must[int64](t)(s.AddProject("web", acme))
	api := must[int64](t)(s.AddProject("api", backend))
	must[int64](t)(s.AddProject("scratch", 0))
	c := serve(t, s)

	p, _, err := c.Projects.GetProject(api, nil)
	if err != nil {
		t.Fatal(err)
	}
	if p.PathWithNamespace != "acme/backend/api" || p.Namespace == nil || p.Namespace.FullPath != "acme/backend" || p.Namespace.Kind != "group" {
		t.Errorf("project = %+v, namespace %+v", p, p.Namespace)
	}
	byPath, _, err := c.Projects.GetProject("acme/backend/api", nil)
	if err != nil || byPath.ID != api {
		t.Errorf("project by path: %v, %v", byPath, err)
	}
	if _, _, err := c.Projects.GetProject(999, nil); !errors.Is(err, gitlab.ErrNotFound) {
		t.Errorf("missing project: err = %v, want ErrNotFound", err)
	}
	all, _, err := c.Projects.ListProjects(nil)
	if err != nil || len(all) != 3 {
		t.Fatalf("ListProjects = %d projects, %v", len(all), err)
	}

	g, _, err := c.Groups.GetGroup("acme/backend", nil)
	if err != nil || g.ID != backend || g.ParentID != acme || g.FullPath != "acme/backend" {
		t.Errorf("group = %+v, %v", g, err)
	}
	ids := func(ps []*gitlab.Project) []int64 {
		var out []int64
		for _, p := range ps {
			out = append(out, p.ID)
		}
		slices.Sort(out)
		return out
	}
	direct, _, err := c.Groups.ListGroupProjects(acme, nil)
	if err != nil || !slices.Equal(ids(direct), []int64{web}) {
		t.Errorf("group projects = %v, %v; want only %d", ids(direct), err, web)
	}
	deep, _, err := c.Groups.ListGroupProjects(acme, &gitlab.ListGroupProjectsOptions{IncludeSubGroups: gitlab.Ptr(true)})
	if err != nil || !slices.Equal(ids(deep), []int64{web, api}) {
		t.Errorf("group projects with subgroups = %v, %v; want %d and %d", ids(deep), err, web, api)
	}
	if _, _, err := c.Groups.ListGroupProjects(404, nil); !errors.Is(err, gitlab.ErrNotFound) {
		t.Errorf("missing group: err = %v, want ErrNotFound", err)
	}
	subs, _, err := c.Groups.ListSubGroups(acme, nil)
	if err != nil || len(subs) != 1 || subs[0].ID != backend {
		t.Errorf("subgroups = %v, %v", subs, err)
	}
}

func TestAPIAuthAnd404Bodies(t *testing.T) {
	s, _ := newEmu(t)
	must[int64](t)(s.AddProject("app", 0))
	srv := httptest.NewServer(s)
	defer srv.Close()

	get := func(path, token string) (int, string) {
		method := http.MethodGet
		if m, p, ok := strings.Cut(path, " "); ok {
			method, path = m, p
		}
		req, _ := http.NewRequest(method, srv.URL+path, nil)
		if token != "" {
			req.Header.Set("PRIVATE-TOKEN", token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, strings.TrimSpace(string(b))
	}
	tests := []struct {
		path, token string
		code        int
		body        string
	}{
		{"/api/v4/projects/1", "", 401, `{"message":"401 Unauthorized"}`},
		{"/api/v4/projects/1", "glpat-wrong", 401, `{"message":"401 Unauthorized"}`},
		{"/api/v4/projects/2", "glpat-test", 404, `{"message":"404 Project Not Found"}`},
		{"/api/v4/groups/2", "glpat-test", 404, `{"message":"404 Group Not Found"}`},
		{"/api/v4/runners/2/managers", "glpat-test", 404, `{"message":"404 Runner Not Found"}`},
		{"/api/v4/projects/1/pipelines/7", "glpat-test", 404, `{"message":"404 Not Found"}`},
		{"/api/v4/nothing/here", "glpat-test", 404, `{"error":"404 Not Found"}`},
		{"/api/v4/projects/1/jobs?scope[]=bogus", "glpat-test", 400, `{"error":"scope does not have a valid value"}`},
		{"POST /api/v4/projects/1", "glpat-test", 405, `{"error":"405 Not Allowed"}`},
		{"DELETE /api/v4/nothing", "glpat-test", 404, `{"error":"404 Not Found"}`},
		{"/projects/1", "glpat-test", 404, `{"error":"404 Not Found"}`},
	}
	for _, tt := range tests {
		code, body := get(tt.path, tt.token)
		if code != tt.code || body != tt.body {
			t.Errorf("GET %s (token %q) = %d %s, want %d %s", tt.path, tt.token, code, body, tt.code, tt.body)
		}
	}

	// client-go surfaces the 401.
	c, _ := gitlab.NewClient("glpat-wrong", gitlab.WithBaseURL(srv.URL), gitlab.WithoutRetries())
	_, resp, err := c.Projects.GetProject(1, nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("client-go with a bad token: resp %v, err %v; want 401", resp, err)
	}
	// A bearer token works as well as PRIVATE-TOKEN.
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/api/v4/projects/1", nil)
	req.Header.Set("Authorization", "Bearer glpat-test")
	resp2, err := http.DefaultClient.Do(req)
	if err != nil || resp2.StatusCode != 200 {
		t.Errorf("bearer token: %v %v", resp2, err)
	}
	resp2.Body.Close()
}

func TestAPIPendingJobsPaginated(t *testing.T) {
	s, clk := newEmu(t)
	pid := must[int64](t)(s.AddProject("app", 0))
	for range 5 {
		must[glemu.PipelineRef](t)(s.CreatePipeline(pid, []glemu.StageSpec{
			{Jobs: jobs(50, time.Minute, "docker")},
			{Jobs: jobs(1, time.Minute, "docker")},
		}))
	}
	clk.Advance(90 * time.Second)
	c := serve(t, s)

	opt := &gitlab.ListJobsOptions{
		Scope:       &[]gitlab.BuildStateValue{gitlab.Pending},
		ListOptions: gitlab.ListOptions{PerPage: 100},
	}
	var all []*gitlab.Job
	pages := 0
	for {
		js, resp, err := c.Jobs.ListProjectJobs(pid, opt)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		all = append(all, js...)
		if resp.TotalItems != 250 || resp.TotalPages != 3 || resp.ItemsPerPage != 100 {
			t.Fatalf("page %d: total %d, pages %d, per page %d; want 250, 3, 100", pages, resp.TotalItems, resp.TotalPages, resp.ItemsPerPage)
		}
		if resp.NextPage == 0 {
			if resp.NextLink != "" {
				t.Errorf("last page has a next link %q", resp.NextLink)
			}
			break
		}
		if !strings.Contains(resp.NextLink, "page=") || resp.LastLink == "" {
			t.Errorf("Link header: next %q, last %q", resp.NextLink, resp.LastLink)
		}
		opt.Page = resp.NextPage
	}
	if pages != 3 || len(all) != 250 {
		t.Fatalf("%d jobs over %d pages, want 250 over 3", len(all), pages)
	}
	seen := map[int64]bool{}
	for i, j := range all {
		if seen[j.ID] {
			t.Fatalf("job %d listed twice", j.ID)
		}
		seen[j.ID] = true
		if i > 0 && j.ID > all[i-1].ID {
			t.Fatalf("jobs not newest first: %d after %d", j.ID, all[i-1].ID)
		}
		if j.Status != "pending" || !slices.Equal(j.TagList, []string{"docker"}) || j.Stage != "stage-0" {
			t.Fatalf("job = %+v", j)
		}
		if j.QueuedDuration != 90 || j.CreatedAt == nil || !j.CreatedAt.Equal(start) || j.StartedAt != nil {
			t.Fatalf("job %d: queued %v s, created %v, started %v; want 90 s, %v, nil", j.ID, j.QueuedDuration, j.CreatedAt, j.StartedAt, start)
		}
		if j.Pipeline.ID == 0 || j.Pipeline.ProjectID != pid {
			t.Fatalf("job pipeline = %+v", j.Pipeline)
		}
	}

	// Other scopes, and several at once.
	created, _, err := c.Jobs.ListProjectJobs(pid, &gitlab.ListJobsOptions{Scope: &[]gitlab.BuildStateValue{gitlab.Created}})
	if err != nil || len(created) != 5 {
		t.Errorf("created jobs = %d, %v; want 5", len(created), err)
	}
	both, resp, err := c.Jobs.ListProjectJobs(pid, &gitlab.ListJobsOptions{Scope: &[]gitlab.BuildStateValue{gitlab.Created, gitlab.Pending}})
	if err != nil || resp.TotalItems != 255 || len(both) != 20 {
		t.Errorf("created+pending: %d of %d, %v; want 20 of 255 (default per_page)", len(both), resp.TotalItems, err)
	}
	one, _, err := c.Jobs.GetJob(pid, all[0].ID)
	if err != nil || one.ID != all[0].ID || one.WebURL == "" {
		t.Errorf("GetJob = %+v, %v", one, err)
	}
}

func TestAPIPipelinesAndRunners(t *testing.T) {
	s, clk := newEmu(t)
	pid := must[int64](t)(s.AddProject("app", 0))
	r := must[glemu.Runner](t)(s.CreateRunner(glemu.RunnerSpec{Description: "pool docker", Tags: []string{"docker"}}))
	check(t, s.RegisterManager(r.Token, "s_one", glemu.ManagerOptions{Capacity: 2}))
	check(t, s.RegisterManager(r.Token, "s_two", glemu.ManagerOptions{Capacity: 2}))
	ref := must[glemu.PipelineRef](t)(s.CreatePipeline(pid, []glemu.StageSpec{
		{Name: "test", Jobs: jobs(3, 10*time.Minute, "docker")},
		{Name: "build", Jobs: jobs(1, time.Minute, "docker")},
	}))
	clk.Advance(glemu.DefaultCheckInterval)
	c := serve(t, s)

	pl, _, err := c.Pipelines.GetPipeline(pid, ref.ID)
	if err != nil || pl.Status != "running" || pl.StartedAt == nil || pl.ProjectID != pid {
		t.Fatalf("pipeline = %+v, %v", pl, err)
	}
	pls, _, err := c.Pipelines.ListProjectPipelines(pid, nil)
	if err != nil || len(pls) != 1 || pls[0].ID != ref.ID {
		t.Errorf("pipelines = %v, %v", pls, err)
	}
	// Filtered by creation time, as GitLab does: strictly after, strictly before.
	created := clk.Now().Add(-glemu.DefaultCheckInterval)
	for _, tc := range []struct {
		after, before time.Time
		want          int
	}{{created.Add(-time.Second), created.Add(time.Second), 1}, {created, time.Time{}, 0}, {time.Time{}, created, 0}} {
		opt := &gitlab.ListProjectPipelinesOptions{}
		if !tc.after.IsZero() {
			opt.CreatedAfter = &tc.after
		}
		if !tc.before.IsZero() {
			opt.CreatedBefore = &tc.before
		}
		if pls, _, err := c.Pipelines.ListProjectPipelines(pid, opt); err != nil || len(pls) != tc.want {
			t.Errorf("pipelines created after %v, before %v: %d, %v; want %d", tc.after, tc.before, len(pls), err, tc.want)
		}
	}
	for after, want := range map[time.Time]int{created.Add(-time.Second): 1, clk.Now(): 0} {
		if pls, _, err := c.Pipelines.ListProjectPipelines(pid, &gitlab.ListProjectPipelinesOptions{UpdatedAfter: &after}); err != nil || len(pls) != want {
			t.Errorf("pipelines updated after %v: %d, %v; want %d", after, len(pls), err, want)
		}
	}
	pjobs, _, err := c.Jobs.ListPipelineJobs(pid, ref.ID, nil)
	if err != nil || len(pjobs) != 4 {
		t.Fatalf("pipeline jobs = %d, %v", len(pjobs), err)
	}
	stages := map[string]int{}
	for _, j := range pjobs {
		stages[j.Stage+":"+j.Status]++
	}
	if stages["test:running"] != 3 || stages["build:created"] != 1 {
		t.Errorf("pipeline jobs by stage and status = %v", stages)
	}

	rd, _, err := c.Runners.GetRunnerDetails(r.ID)
	if err != nil || !slices.Equal(rd.TagList, []string{"docker"}) || rd.Status != "online" || rd.Description != "pool docker" {
		t.Errorf("runner = %+v, %v", rd, err)
	}

	// Managers: not in client-go v1.46.0's typed API, read through its raw request path.
	req, err := c.NewRequest(http.MethodGet, "runners/"+strconv.FormatInt(r.ID, 10)+"/managers", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var managers []struct {
		ID          int64      `json:"id"`
		SystemID    string     `json:"system_id"`
		Status      string     `json:"status"`
		ContactedAt *time.Time `json:"contacted_at"`
		JobStatus   string     `json:"job_execution_status"`
	}
	if _, err := c.Do(req, &managers); err != nil {
		t.Fatal(err)
	}
	if len(managers) != 2 || managers[0].SystemID != "s_one" || managers[1].SystemID != "s_two" {
		t.Fatalf("managers = %+v", managers)
	}
	for _, m := range managers {
		if m.Status != "online" || m.ContactedAt == nil || m.ContactedAt.After(clk.Now()) || clk.Now().Sub(*m.ContactedAt) > glemu.DefaultCheckInterval {
			t.Errorf("manager %s: status %s, contacted %v (now %v)", m.SystemID, m.Status, m.ContactedAt, clk.Now())
		}
	}

	running := func(systemID string) []*gitlab.Job {
		t.Helper()
		js, _, err := c.Runners.ListRunnerJobs(r.ID, &gitlab.ListRunnerJobsOptions{Status: gitlab.Ptr("running")},
			func(req *retryablehttp.Request) error {
				q := req.URL.Query()
				q.Set("system_id", systemID)
				req.URL.RawQuery = q.Encode()
				return nil
			})
		if err != nil {
			t.Fatal(err)
		}
		return js
	}
	one, two := running("s_one"), running("s_two")
	if len(one)+len(two) != 3 {
		t.Fatalf("running jobs per manager: %d + %d, want 3 in all", len(one), len(two))
	}
	for _, j := range append(one, two...) {
		if j.Runner.ID != r.ID || j.Status != "running" || j.StartedAt == nil {
			t.Errorf("running job = %+v", j)
		}
	}
	if len(running("s_none")) != 0 {
		t.Error("jobs listed for an unknown system_id")
	}
	if js, _, err := c.Runners.ListRunnerJobs(r.ID, &gitlab.ListRunnerJobsOptions{Status: gitlab.Ptr("pending")}); err != nil || len(js) != 0 {
		t.Errorf("runner jobs with status=pending: %d jobs, %v; want none (a runner has no pending jobs)", len(js), err)
	}
	if _, _, err := c.Runners.ListRunnerJobs(r.ID, &gitlab.ListRunnerJobsOptions{Status: gitlab.Ptr("bogus")}); err == nil {
		t.Error("runner jobs with status=bogus accepted; GitLab answers 400")
	}
}

func TestAPIConcurrentWithClock(t *testing.T) {
	s, clk := newEmu(t)
	pid := must[int64](t)(s.AddProject("app", 0))
	r := must[glemu.Runner](t)(s.CreateRunner(glemu.RunnerSpec{Tags: []string{"docker"}}))
	for _, id := range []string{"s_1", "s_2", "s_3"} {
		check(t, s.RegisterManager(r.Token, id, glemu.ManagerOptions{Capacity: 3}))
	}
	c := serve(t, s)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 3 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, _, err := c.Jobs.ListProjectJobs(pid, &gitlab.ListJobsOptions{Scope: &[]gitlab.BuildStateValue{gitlab.Pending}}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	for i := range 200 {
		if _, err := s.CreatePipeline(pid, []glemu.StageSpec{{Jobs: jobs(2, time.Duration(5+i%30)*time.Second, "docker")}}); err != nil {
			t.Fatal(err)
		}
		clk.Advance(2 * time.Second)
	}
	runUntilIdle(t, clk)
	close(stop)
	wg.Wait()
	if c := s.Counts(); c.Success != 400 {
		t.Errorf("counts = %+v, want 400 successes", c)
	}
}

func TestJobHooks(t *testing.T) {
	s, clk := newEmu(t)
	pid := must[int64](t)(s.AddProject("app", 0))
	r := must[glemu.Runner](t)(s.CreateRunner(glemu.RunnerSpec{Description: "docker pool", Tags: []string{"docker"}}))
	check(t, s.RegisterManager(r.Token, "s_1", glemu.ManagerOptions{}))

	var mu sync.Mutex
	var inproc []*gitlab.JobEvent
	check(t, s.AddJobHook(glemu.HookConfig{Secret: "hook-secret", Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Header.Get("X-Gitlab-Event") != "Job Hook" || req.Header.Get("X-Gitlab-Token") != "hook-secret" {
			t.Errorf("hook headers = %v", req.Header)
		}
		body, _ := io.ReadAll(req.Body)
		ev, err := gitlab.ParseWebhook(gitlab.HookEventType(req), body)
		if err != nil {
			t.Errorf("client-go cannot parse the hook: %v\n%s", err, body)
			return
		}
		je, ok := ev.(*gitlab.JobEvent)
		if !ok {
			t.Errorf("parsed %T, want *gitlab.JobEvent", ev)
			return
		}
		var raw map[string]any
		if err := json.Unmarshal(body, &raw); err != nil || raw["tags"] == nil {
			t.Errorf("hook body has no top-level tags: %s", body)
		}
		inproc = append(inproc, je)
	})}))

	got := make(chan *http.Request, 10)
	bodies := make(chan []byte, 10)
	remote := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		bodies <- b
		got <- req
	}))
	defer remote.Close()
	check(t, s.AddJobHook(glemu.HookConfig{URL: remote.URL, Secret: "other", Statuses: []string{"pending"}}))
	if err := s.AddJobHook(glemu.HookConfig{}); err == nil {
		t.Error("hook without Handler or URL accepted")
	}

	ref := must[glemu.PipelineRef](t)(s.CreatePipeline(pid, []glemu.StageSpec{{Name: "test", Jobs: jobs(1, time.Minute, "docker")}}))
	runUntilIdle(t, clk)

	mu.Lock()
	var statuses []string
	for _, e := range inproc {
		statuses = append(statuses, e.BuildStatus)
		if e.BuildID != ref.JobIDs[0][0] || e.ProjectID != pid || e.PipelineID != ref.ID || e.BuildStage != "test" {
			t.Errorf("event = %+v", e)
		}
	}
	mu.Unlock()
	if want := []string{"created", "pending", "running", "success"}; !slices.Equal(statuses, want) {
		t.Fatalf("in-process hook statuses = %v, want %v", statuses, want)
	}
	last := inproc[3]
	if last.Runner.ID != r.ID || last.Runner.Description != "docker pool" || !slices.Equal(last.Runner.Tags, []string{"docker"}) {
		t.Errorf("runner in hook = %+v", last.Runner)
	}
	if last.BuildDuration != 60 || last.BuildFinishedAt == "" {
		t.Errorf("finished hook: duration %v, finished %q", last.BuildDuration, last.BuildFinishedAt)
	}

	select {
	case req := <-got:
		if req.Header.Get("X-Gitlab-Token") != "other" || req.Header.Get("X-Gitlab-Event") != "Job Hook" {
			t.Errorf("URL hook headers = %v", req.Header)
		}
		var ev gitlab.JobEvent
		if err := json.Unmarshal(<-bodies, &ev); err != nil || ev.BuildStatus != "pending" {
			t.Errorf("URL hook body: %+v, %v", ev, err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("URL hook not delivered")
	}
	s.Close()
	select {
	case req := <-got:
		t.Errorf("URL hook delivered a %q status though only pending was asked for", req.Header.Get("X-Gitlab-Event"))
	default:
	}
}

// A listing of unfinished jobs skips the finished ones without missing any,
// and a listing of finished jobs still has them all.
func TestAPIListsUnfinishedJobsAfterOthersFinish(t *testing.T) {
	s, clk := newEmu(t)
	pid := must[int64](t)(s.AddProject("app", 0))
	r := must[glemu.Runner](t)(s.CreateRunner(glemu.RunnerSpec{Description: "one slot", Tags: []string{"docker"}}))
	check(t, s.RegisterManager(r.Token, "s_one", glemu.ManagerOptions{Capacity: 1}))
	c := serve(t, s)
	must[glemu.PipelineRef](t)(s.CreatePipeline(pid, []glemu.StageSpec{{Name: "test", Jobs: jobs(1, time.Minute, "docker")}}))
	b := must[glemu.PipelineRef](t)(s.CreatePipeline(pid, []glemu.StageSpec{
		{Name: "test", Jobs: jobs(1, 10*time.Minute, "docker")},
		{Name: "build", Jobs: jobs(1, time.Minute, "docker")},
	}))
	list := func(scope ...gitlab.BuildStateValue) []int64 {
		t.Helper()
		js, _, err := c.Jobs.ListProjectJobs(pid, &gitlab.ListJobsOptions{Scope: &scope})
		if err != nil {
			t.Fatal(err)
		}
		var ids []int64
		for _, j := range js {
			ids = append(ids, j.ID)
		}
		slices.Sort(ids)
		return ids
	}
	clk.Advance(5 * time.Minute) // the first pipeline is done; b's test runs, its build waits
	want := []int64{b.JobIDs[0][0], b.JobIDs[1][0]}
	for range 2 { // the second listing starts past the finished job
		if got := list(gitlab.Created, gitlab.Running); !slices.Equal(got, want) {
			t.Fatalf("created+running = %v, want %v", got, want)
		}
	}
	if got := list(gitlab.Success); len(got) != 1 {
		t.Fatalf("success = %v, want the first pipeline's job", got)
	}
	clk.Advance(15 * time.Minute)
	if got := list(gitlab.Created, gitlab.Running); len(got) != 0 {
		t.Fatalf("created+running = %v after everything finished", got)
	}
	if got := list(gitlab.Success); len(got) != 3 {
		t.Fatalf("success = %v, want all 3 jobs", got)
	}
}

// A drained manager exits when its last job ends, as gitlab-runner does:
// GitLab's contacted_at stops there, and two hours later the manager is
// offline. The runner stays online while another manager is.
func TestAPIDrainedManagerFallsSilent(t *testing.T) {
	s, clk := newEmu(t)
	pid := must[int64](t)(s.AddProject("app", 0))
	r := must[glemu.Runner](t)(s.CreateRunner(glemu.RunnerSpec{Description: "pool docker", Tags: []string{"docker"}}))
	check(t, s.RegisterManager(r.Token, "s_busy", glemu.ManagerOptions{Capacity: 1}))
	must[glemu.PipelineRef](t)(s.CreatePipeline(pid, []glemu.StageSpec{{Jobs: jobs(1, 10*time.Minute, "docker")}}))
	clk.Advance(glemu.DefaultCheckInterval) // s_busy takes the job
	check(t, s.RegisterManager(r.Token, "s_idle", glemu.ManagerOptions{Capacity: 1}))
	c := serve(t, s)

	type manager struct {
		SystemID    string    `json:"system_id"`
		Status      string    `json:"status"`
		ContactedAt time.Time `json:"contacted_at"`
	}
	managers := func() map[string]manager {
		t.Helper()
		req, err := c.NewRequest(http.MethodGet, "runners/"+strconv.FormatInt(r.ID, 10)+"/managers", nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		var ms []manager
		if _, err := c.Do(req, &ms); err != nil {
			t.Fatal(err)
		}
		out := map[string]manager{}
		for _, m := range ms {
			out[m.SystemID] = m
		}
		return out
	}
	fresh := func(m manager) bool { return clk.Now().Sub(m.ContactedAt) <= glemu.DefaultCheckInterval }

	check(t, s.Drain(r.Token, "s_busy"))
	check(t, s.Drain(r.Token, "s_idle"))
	idleExit := clk.Now()
	clk.Advance(5 * time.Minute)
	ms := managers()
	if m := ms["s_busy"]; !fresh(m) || m.Status != "online" {
		t.Errorf("a drained manager still running its job: %+v at %v; want it in contact", m, clk.Now())
	}
	if m := ms["s_idle"]; m.ContactedAt.After(idleExit) || idleExit.Sub(m.ContactedAt) > glemu.DefaultCheckInterval || m.Status != "online" {
		t.Errorf("a manager drained with no job: %+v; want it silent since %v, online still", m, idleExit)
	}
	clk.Advance(5 * time.Minute) // the job ends
	jobEnd := clk.Now()
	clk.Advance(time.Hour)
	if m := managers()["s_busy"]; jobEnd.Sub(m.ContactedAt) > glemu.DefaultCheckInterval || m.ContactedAt.After(jobEnd) {
		t.Errorf("a drained manager after its job ended: %+v; want it silent since %v", m, jobEnd)
	}
	check(t, s.RegisterManager(r.Token, "s_new", glemu.ManagerOptions{Capacity: 1}))
	clk.Advance(time.Hour)
	ms = managers()
	if ms["s_busy"].Status != "offline" || ms["s_idle"].Status != "offline" || ms["s_new"].Status != "online" {
		t.Errorf("two hours after the drained managers exited: %+v; want them offline, s_new online", ms)
	}
	if rd, _, err := c.Runners.GetRunnerDetails(r.ID); err != nil || rd.Status != "online" || !fresh(manager{ContactedAt: *rd.ContactedAt}) {
		t.Errorf("runner with one manager online: %+v, %v", rd, err)
	}
}

// POST /runners/verify tells a runner token's runner, with no access token
// (it is the runner API), and refuses a token it does not know.
func TestAPIVerifyRunner(t *testing.T) {
	s, _ := newEmu(t)
	r := must[glemu.Runner](t)(s.CreateRunner(glemu.RunnerSpec{Tags: []string{"docker"}}))
	srv := httptest.NewServer(s)
	defer srv.Close()
	for _, tc := range []struct {
		token  string
		status int
		id     int64
	}{{r.Token, http.StatusOK, r.ID}, {"glrt-unknown", http.StatusForbidden, 0}} {
		resp, err := http.Post(srv.URL+glemu.Prefix+"/runners/verify", "application/json", strings.NewReader(`{"token":"`+tc.token+`"}`))
		if err != nil {
			t.Fatal(err)
		}
		var body struct {
			ID int64 `json:"id"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || body.ID != tc.id {
			t.Errorf("verify %s: %d, runner %d; want %d, runner %d", tc.token, resp.StatusCode, body.ID, tc.status, tc.id)
		}
	}
}

// GitLab's jobs_index limit: per token, in whole minutes, every request
// counted; 429 with Retry-After: 60 and no RateLimit-Reset beyond it.
func TestAPIJobsListRateLimit(t *testing.T) {
	clk := clock.NewVirtual(start)
	s := glemu.New(glemu.Options{Clock: clk, Tokens: []string{"glpat-test", "glpat-other"}, JobsPerMinute: 2})
	t.Cleanup(s.Close)
	pid := must[int64](t)(s.AddProject("app", 0))
	must[glemu.PipelineRef](t)(s.CreatePipeline(pid, []glemu.StageSpec{{Jobs: jobs(1, time.Minute, "docker")}}))
	srv := httptest.NewServer(s)
	defer srv.Close()
	get := func(path, token string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		req.Header.Set("PRIVATE-TOKEN", token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	jobsPath := "/api/v4/projects/1/jobs?scope[]=pending"
	for i, want := range []int{200, 200, 429, 429} {
		if resp := get(jobsPath, "glpat-test"); resp.StatusCode != want {
			t.Fatalf("request %d: %d, want %d", i+1, resp.StatusCode, want)
		} else if want == 429 && (resp.Header.Get("Retry-After") != "60" || resp.Header.Get("RateLimit-Reset") != "") {
			t.Errorf("429 headers %v, want Retry-After: 60 and no RateLimit-Reset", resp.Header)
		}
	}
	if code := get(jobsPath, "glpat-other").StatusCode; code != 200 {
		t.Errorf("another token's first request: %d, want 200 (the limit is per user)", code)
	}
	if code := get("/api/v4/projects/1/pipelines/1/jobs", "glpat-test").StatusCode; code != 200 {
		t.Errorf("a pipeline's jobs: %d, want 200 (not under the limit)", code)
	}
	clk.Advance(time.Minute)
	if code := get(jobsPath, "glpat-test").StatusCode; code != 200 {
		t.Errorf("next minute: %d, want 200", code)
	}
}

// A project with CI/CD off refuses its job and pipeline endpoints; group
// listings include shared and archived projects unless told not to.
func TestAPIRefusedSharedAndArchivedProjects(t *testing.T) {
	s, _ := newEmu(t)
	acme := must[int64](t)(s.AddGroup("acme", 0))
	other := must[int64](t)(s.AddGroup("other", 0))
	web := must[int64](t)(s.AddProject("web", acme))
	old := must[int64](t)(s.AddProject("old", acme))
	lib := must[int64](t)(s.AddProject("lib", other))
	check(t, s.ShareProject(lib, acme))
	check(t, s.ArchiveProject(old))
	c := serve(t, s)

	check(t, s.SetCICD(web, false))
	if _, err := s.CreatePipeline(web, []glemu.StageSpec{{Jobs: jobs(1, time.Minute)}}); err == nil {
		t.Error("a pipeline was created with CI/CD off")
	}
	if _, err := s.CreatePipeline(old, []glemu.StageSpec{{Jobs: jobs(1, time.Minute)}}); err == nil {
		t.Error("a pipeline was created in an archived project")
	}
	_, resp, err := c.Jobs.ListProjectJobs(web, nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("jobs of a project with CI/CD off: %v, %v; want 403", resp, err)
	}
	if _, resp, _ := c.Pipelines.ListProjectPipelines(web, nil); resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("pipelines of a project with CI/CD off: %v; want 403", resp)
	}
	check(t, s.SetCICD(web, true))
	if _, _, err := c.Jobs.ListProjectJobs(web, nil); err != nil {
		t.Errorf("jobs with CI/CD back on: %v", err)
	}

	ids := func(opt *gitlab.ListGroupProjectsOptions) []int64 {
		t.Helper()
		ps, _, err := c.Groups.ListGroupProjects(acme, opt)
		if err != nil {
			t.Fatal(err)
		}
		var out []int64
		for _, p := range ps {
			out = append(out, p.ID)
			if p.Archived != (p.ID == old) {
				t.Errorf("project %d archived = %v", p.ID, p.Archived)
			}
		}
		slices.Sort(out)
		return out
	}
	for _, tt := range []struct {
		opt  *gitlab.ListGroupProjectsOptions
		want []int64
	}{
		{nil, []int64{web, old, lib}},
		{&gitlab.ListGroupProjectsOptions{WithShared: gitlab.Ptr(false)}, []int64{web, old}},
		{&gitlab.ListGroupProjectsOptions{Archived: gitlab.Ptr(false)}, []int64{web, lib}},
		{&gitlab.ListGroupProjectsOptions{Archived: gitlab.Ptr(true)}, []int64{old}},
		{&gitlab.ListGroupProjectsOptions{WithShared: gitlab.Ptr(false), Archived: gitlab.Ptr(false), IncludeSubGroups: gitlab.Ptr(true)}, []int64{web}},
	} {
		if got := ids(tt.opt); !slices.Equal(got, tt.want) {
			t.Errorf("group projects %+v = %v, want %v", tt.opt, got, tt.want)
		}
	}
}
