// Package demand reads what GitLab wants from the runner fleet: the pending
// jobs of the configured projects (with their tags and queue times), their
// created jobs (the stages to come), and the jobs each runner manager is
// running. It talks to GitLab through gitlab.com/gitlab-org/api/client-go; a
// Job Hook webhook receiver (Webhook) wakes the autoscaler when a job becomes
// pending, with polling as the safety net.
package demand

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	retryablehttp "github.com/hashicorp/go-retryablehttp"
	gitlab "gitlab.com/gitlab-org/api/client-go"

	"github.com/shoalci/shoal/internal/clock"
	"github.com/shoalci/shoal/internal/config"
	"github.com/shoalci/shoal/internal/tags"
)

// Config says where demand comes from.
type Config struct {
	// Projects are project IDs or full paths ("acme/backend/api").
	Projects []string
	// Groups are group IDs or full paths; each stands for all its projects,
	// subgroups included.
	Groups []string
	// RunnerIDs are the runners whose managers (one per Droplet) shoal watches.
	RunnerIDs []int64
	// MaxPending caps the pending jobs read per project (default 1,000): a
	// longer queue saturates every pool long before, and reading it all on
	// every reconcile would only load GitLab.
	MaxPending int
	// GroupRefresh is how long a group's project list is reused before it is
	// read again. Default 5 minutes.
	GroupRefresh time.Duration
	// CreatedEvery is how long Snapshot.Created is kept before every project
	// is read again (default 1 minute). In between only the pipelines that
	// moved are read: stages change over minutes, and each project read is
	// one more listing of all its pipelines' next stages.
	CreatedEvery time.Duration
	// JobsPerMinute is shoal's own budget of GET /projects/:id/jobs requests
	// (pending reads and project-wide created reads, each page one request;
	// a pipeline's jobs are another endpoint) in any rolling minute. GitLab
	// allows that endpoint 600 requests a minute per user by default
	// (project_jobs_api_rate_limit); the default, 300, leaves the rest to
	// other tools of the same user. Over budget, the projects a Job Hook
	// named (Touch) are read first, then those read longest ago, and the
	// others keep their last read. A project's read, once begun, reads all
	// its pages. Negative: no budget of shoal's own.
	JobsPerMinute int
}

// staleAfter is how old a project's last read may grow, while the budget or
// a rate limit holds reads back, before a Snapshot reports it as a Problem.
const staleAfter = 2 * time.Minute

// staleLimit is how old a project's last read may be and still stand in for
// a failed one; an older one is left out.
const staleLimit = 10 * time.Minute

// PendingCap is the MaxPending worth reading for pools: as many jobs as they
// could ever run at once (at least 100), since a longer queue saturates them all.
func PendingCap(pools []config.Pool) int {
	slots := 0
	for _, p := range pools {
		slots += p.MostInstances() * max(p.CapacityPerInstance, 1)
	}
	return max(slots, 100)
}

// Source reads Snapshots from GitLab. Snapshot is called from one goroutine
// at a time; Touch from any.
type Source struct {
	c   *gitlab.Client
	cfg Config
	clk clock.Clock

	resolved map[string]resolution // "project <path>" and "group <path>" → project IDs
	names    map[int64]string      // project paths, for Problems
	state    map[int64]*projectState

	lastCreated   []CreatedJob
	seenPipelines map[int64]int64 // pipeline → project: with jobs pending or created at the last read

	jobLists     []time.Time // GET /projects/:id/jobs requests of the last minute, oldest first
	blockedUntil time.Time   // after a 429, no job lists before this

	mu      sync.Mutex     // guards watched and touched, for Touch
	watched map[int64]bool // the projects the last Snapshot read; nil before it
	touched map[int64]bool // named by a Job Hook since their last read
}

// resolution is a project path's or group's project IDs, as read at a time.
type resolution struct {
	ids []int64
	at  time.Time
}

// projectState is what the Source remembers of one watched project.
type projectState struct {
	pending   []PendingJob // the last successful read, at readAt (zero: never)
	readAt    time.Time
	createdAt time.Time // the last successful project-wide read of created jobs
	err       error     // this Snapshot's failed pending read
	refusal   error     // 403 or 404 on its job list, at refusedAt: not asked again for GroupRefresh
	refusedAt time.Time
}

// NewSource returns a Source reading through c. clk dates the snapshots and
// turns GitLab's queued_duration into a queue time.
func NewSource(c *gitlab.Client, cfg Config, clk clock.Clock) (*Source, error) {
	if c == nil {
		return nil, errors.New("demand: no GitLab client")
	}
	if len(cfg.Projects) == 0 && len(cfg.Groups) == 0 {
		return nil, errors.New("demand: no projects or groups to watch: configure at least one")
	}
	if cfg.GroupRefresh == 0 {
		cfg.GroupRefresh = 5 * time.Minute
	}
	if cfg.CreatedEvery == 0 {
		cfg.CreatedEvery = time.Minute
	}
	if cfg.JobsPerMinute == 0 {
		cfg.JobsPerMinute = 300
	}
	if clk == nil {
		clk = clock.Real{}
	}
	return &Source{c: c, cfg: cfg, clk: clk, resolved: map[string]resolution{}, names: map[int64]string{},
		state: map[int64]*projectState{}, seenPipelines: map[int64]int64{}, touched: map[int64]bool{}}, nil
}

// Touch tells the Source that a Job Hook named a project: its next read
// comes before the others' when the budget of job-list requests runs short.
// It reports whether the project is watched (one the last Snapshot read, or
// any before the first Snapshot has listed the groups): a hook of another
// project is not shoal's business.
func (s *Source) Touch(projectID int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.watched != nil && !s.watched[projectID] {
		return false
	}
	s.touched[projectID] = true
	return true
}

// PendingJob is a job waiting for a runner.
type PendingJob struct {
	ID         int64
	ProjectID  int64
	PipelineID int64
	Name       string
	Stage      string
	Tags       []string // sorted
	CreatedAt  time.Time
	QueuedAt   time.Time // when it became pending
}

// CreatedJob is a job waiting, created, for its pipeline's earlier stages to
// finish: a stage to come.
type CreatedJob struct {
	ID         int64
	ProjectID  int64
	PipelineID int64
	Tags       []string // sorted
	CreatedAt  time.Time
}

// RunningJob is a job a runner manager has taken.
type RunningJob struct {
	ID        int64
	ProjectID int64
	Tags      []string
	StartedAt time.Time
}

// Manager is one runner manager: one gitlab-runner process, on one Droplet.
type Manager struct {
	ID          int64
	RunnerID    int64
	SystemID    string
	Status      string    // online, offline, stale, never_contacted
	CreatedAt   time.Time // when it first contacted GitLab
	ContactedAt time.Time
}

// Snapshot is demand at one moment.
type Snapshot struct {
	At       time.Time
	Pending  []PendingJob // oldest first
	Managers []Manager    // by runner, then manager ID
	// PendingByTags groups Pending by tags.Key of the job tags, oldest first.
	PendingByTags map[string][]PendingJob
	// Created are the created jobs of each pipeline's next stage in the
	// watched projects (read up to MaxPending per project): the stage to come.
	// Every project is read at most every CreatedEvery; in between, a
	// pipeline is read at once when it is new with jobs pending or a stage
	// it lists has begun.
	Created []CreatedJob
	// RunningBySystemID lists each manager's running jobs; every manager of
	// Managers has an entry, empty when idle.
	RunningBySystemID map[string][]RunningJob
	// Problems are what this Snapshot could not read fresh and what it used
	// instead, each a sentence naming the project or group and what to do.
	Problems []string
}

// Snapshot reads pending jobs, managers and running jobs.
//
// One project's failure does not fail it: a project that refuses its job
// list (403, 404) is left out until GroupRefresh has passed; on other errors
// a project's last read stands in, and one never read is left out; each is
// reported in Problems. So are a group listing or project lookup that failed
// after an earlier success (its last list stands in). Snapshot fails when no
// watched project's pending jobs could be read, fresh or earlier (GitLab
// down, the token revoked: nothing should be decided on an empty queue), when
// a project or group was never resolved, and when any read of runner
// managers or their running jobs fails, since drains depend on them. The
// error names the request that failed.
func (s *Source) Snapshot(ctx context.Context) (Snapshot, error) {
	now := s.clk.Now()
	snap := Snapshot{At: now, PendingByTags: map[string][]PendingJob{}, RunningBySystemID: map[string][]RunningJob{}}
	projects, err := s.projects(ctx, now, &snap.Problems)
	if err != nil {
		return Snapshot{}, err
	}
	if snap.Pending, err = s.readPending(ctx, projects, now, &snap.Problems); err != nil {
		return Snapshot{}, err
	}
	slices.SortFunc(snap.Pending, func(a, b PendingJob) int {
		return cmp.Or(a.QueuedAt.Compare(b.QueuedAt), cmp.Compare(a.ID, b.ID))
	})
	for _, j := range snap.Pending {
		k := tags.Key(j.Tags)
		snap.PendingByTags[k] = append(snap.PendingByTags[k], j)
	}
	if snap.Created, err = s.created(ctx, projects, snap.Pending, now, &snap.Problems); err != nil {
		return Snapshot{}, err
	}
	s.rateLimitProblem(&snap.Problems)
	for _, rid := range s.cfg.RunnerIDs {
		managers, err := s.Managers(ctx, rid)
		if err != nil {
			return Snapshot{}, err
		}
		for _, m := range managers {
			snap.RunningBySystemID[m.SystemID] = []RunningJob{}
		}
		snap.Managers = append(snap.Managers, managers...)
		running, err := s.running(ctx, rid, "")
		if errors.Is(err, errNoRunnerManager) {
			// This GitLab does not say which manager runs a job: ask per manager.
			running = map[string][]RunningJob{}
			for _, m := range managers {
				if running[m.SystemID], err = s.RunningJobs(ctx, rid, m.SystemID); err != nil {
					break
				}
			}
		}
		if err != nil {
			return Snapshot{}, err
		}
		for sys, jobs := range running {
			snap.RunningBySystemID[sys] = append(snap.RunningBySystemID[sys], jobs...)
		}
	}
	return snap, nil
}

// projects resolves the configured projects and groups to project IDs, in
// configuration order without duplicates. Paths and group listings are cached
// for GroupRefresh: new projects in a group show up after at most that long.
func (s *Source) projects(ctx context.Context, now time.Time, problems *[]string) ([]int64, error) {
	var ids []int64
	seen := map[int64]bool{}
	add := func(list []int64) {
		for _, id := range list {
			if !seen[id] {
				seen[id] = true
				ids = append(ids, id)
			}
		}
	}
	for _, p := range s.cfg.Projects {
		if id, err := strconv.ParseInt(p, 10, 64); err == nil {
			add([]int64{id})
			continue
		}
		list, err := s.resolve(ctx, "project "+p, now, problems, func() ([]int64, error) {
			proj, _, err := s.c.Projects.GetProject(p, nil, gitlab.WithContext(ctx))
			if err != nil {
				return nil, fmt.Errorf("read project %s: %w", p, hint(err))
			}
			s.names[proj.ID] = proj.PathWithNamespace
			return []int64{proj.ID}, nil
		})
		if err != nil {
			return nil, err
		}
		add(list)
	}
	for _, g := range s.cfg.Groups {
		list, err := s.resolve(ctx, "group "+g, now, problems, func() ([]int64, error) { return s.groupProjectIDs(ctx, g) })
		if err != nil {
			return nil, err
		}
		add(list)
	}
	return ids, nil
}

// resolve returns key's project IDs, read again once GroupRefresh old. When
// that read fails the last list stands in, reported in problems, and the
// read is tried again at the next Snapshot; with no last list it is an error.
func (s *Source) resolve(ctx context.Context, key string, now time.Time, problems *[]string, read func() ([]int64, error)) ([]int64, error) {
	last, ok := s.resolved[key]
	if ok && now.Sub(last.at) < s.cfg.GroupRefresh {
		return last.ids, nil
	}
	ids, err := read()
	switch {
	case err == nil:
		s.resolved[key] = resolution{ids: ids, at: now}
		return ids, nil
	case !ok || ctx.Err() != nil:
		return nil, err
	}
	*problems = append(*problems, fmt.Sprintf("%v: still watching the %d project(s) of %s as read at %s; "+
		"trying again at the next poll (if this lasts, check that the token's user can still see it)",
		err, len(last.ids), key, last.at.UTC().Format(time.TimeOnly)))
	return last.ids, nil
}

func (s *Source) groupProjectIDs(ctx context.Context, g string) ([]int64, error) {
	// A project merely shared with the group is not its runners' business,
	// and an archived one runs no jobs: GitLab lists both unless told not to.
	opt := &gitlab.ListGroupProjectsOptions{
		ListOptions:      gitlab.ListOptions{PerPage: 100},
		IncludeSubGroups: gitlab.Ptr(true),
		Simple:           gitlab.Ptr(true),
		WithShared:       gitlab.Ptr(false),
		Archived:         gitlab.Ptr(false),
	}
	ps, err := collect(&opt.Page, 0, func() ([]*gitlab.Project, *gitlab.Response, error) {
		return s.c.Groups.ListGroupProjects(g, opt, gitlab.WithContext(ctx))
	})
	if err != nil {
		return nil, fmt.Errorf("list projects of group %s: %w", g, err)
	}
	ids := make([]int64, len(ps))
	for i, p := range ps {
		ids[i] = p.ID
		s.names[p.ID] = p.PathWithNamespace
	}
	return ids, nil
}

// maxPending is MaxPending or its default.
func (s *Source) maxPending() int {
	if s.cfg.MaxPending > 0 {
		return s.cfg.MaxPending
	}
	return 1000
}

// pending lists a project's pending jobs, up to maxPending.
func (s *Source) pending(ctx context.Context, pid int64, now time.Time) ([]PendingJob, error) {
	opt := &gitlab.ListJobsOptions{
		ListOptions: gitlab.ListOptions{PerPage: 100},
		Scope:       &[]gitlab.BuildStateValue{gitlab.Pending},
	}
	jobs, err := readPages[jobEntity](ctx, s.c, fmt.Sprintf("projects/%d/jobs", pid), opt, &opt.Page, s.maxPending(), s.countJobList())
	if err != nil {
		return nil, fmt.Errorf("list pending jobs of project %d: %w", pid, err)
	}
	out := make([]PendingJob, len(jobs))
	for i, j := range jobs {
		pj := PendingJob{ID: j.ID, ProjectID: pid, PipelineID: j.Pipeline.ID, Name: j.Name, Stage: j.Stage,
			Tags: tags.Sorted(j.TagList)}
		if j.CreatedAt != nil {
			pj.CreatedAt = *j.CreatedAt
		}
		// For a pending job GitLab's queued_duration runs up to now.
		pj.QueuedAt = now.Add(-time.Duration(j.QueuedDuration * float64(time.Second))).Round(time.Millisecond)
		out[i] = pj
	}
	return out, nil
}

// created returns the created jobs of each pipeline's next stage. Each
// project is read when its last such read is CreatedEvery old (the oldest
// first, within the budget of job-list requests). In between, only the
// pipelines that moved are read again: one it has not seen with jobs pending
// (what follows its first stage?), and one whose listed stage has begun (what
// follows it?). A pipeline's read is a few jobs, where the project's is every
// pipeline's next stage. A project whose read fails keeps its last one.
func (s *Source) created(ctx context.Context, projects []int64, pending []PendingJob, now time.Time, problems *[]string) ([]CreatedJob, error) {
	// Projects no longer watched, or refused, have nothing to come.
	live := map[int64]bool{}
	var due []int64
	for _, pid := range projects {
		st := s.state[pid]
		if st.refusal != nil {
			continue
		}
		live[pid] = true
		if st.err == nil && (st.createdAt.IsZero() || now.Sub(st.createdAt) >= s.cfg.CreatedEvery) {
			due = append(due, pid)
		}
	}
	if slices.ContainsFunc(s.lastCreated, func(j CreatedJob) bool { return !live[j.ProjectID] }) {
		// A new slice: the last one may still be held by an earlier Snapshot.
		s.lastCreated = slices.DeleteFunc(slices.Clone(s.lastCreated), func(j CreatedJob) bool { return !live[j.ProjectID] })
	}
	maps.DeleteFunc(s.seenPipelines, func(_, pid int64) bool { return !live[pid] })

	slices.SortStableFunc(due, func(a, b int64) int { return s.state[a].createdAt.Compare(s.state[b].createdAt) })
	fresh := map[int64][]CreatedJob{}
	var read []int64 // in reading order
	for _, pid := range due {
		if !s.mayListJobs() {
			break // the budget is spent or GitLab said to wait: the last reads stand
		}
		jobs, err := s.createdJobs(ctx, pid, 0)
		if err != nil {
			if ctx.Err() != nil {
				return nil, err
			}
			if !s.noteRateLimit(err) { // a rate limit is reported once, for all
				*problems = append(*problems, fmt.Sprintf("%v: %s's created jobs as last read stand in; "+
					"trying again at the next poll", err, s.name(pid)))
			}
			continue
		}
		s.state[pid].createdAt = now
		fresh[pid] = jobs
		read = append(read, pid)
	}
	isFresh := func(pid int64) bool { _, ok := fresh[pid]; return ok }
	if len(read) > 0 {
		next := slices.DeleteFunc(slices.Clone(s.lastCreated), func(j CreatedJob) bool { return isFresh(j.ProjectID) })
		maps.DeleteFunc(s.seenPipelines, func(_, pid int64) bool { return isFresh(pid) })
		for _, j := range pending {
			if isFresh(j.ProjectID) {
				s.seenPipelines[j.PipelineID] = j.ProjectID
			}
		}
		for _, pid := range read {
			for _, j := range fresh[pid] {
				s.seenPipelines[j.PipelineID] = pid
			}
			next = append(next, fresh[pid]...)
		}
		s.lastCreated = next
	}

	type pipeline struct{ project, id int64 }
	var moved []pipeline
	isMoved := map[int64]bool{}
	move := func(project, id int64) {
		if !isMoved[id] {
			isMoved[id] = true
			moved = append(moved, pipeline{project, id})
		}
	}
	isPending := make(map[int64]bool, len(pending))
	for _, j := range pending {
		isPending[j.ID] = true
		if _, ok := s.seenPipelines[j.PipelineID]; !ok && !isFresh(j.ProjectID) {
			move(j.ProjectID, j.PipelineID)
		}
	}
	for _, j := range s.lastCreated {
		if isPending[j.ID] && !isFresh(j.ProjectID) {
			move(j.ProjectID, j.PipelineID)
		}
	}
	if len(moved) == 0 {
		return s.lastCreated, nil
	}
	next := slices.DeleteFunc(slices.Clone(s.lastCreated), func(j CreatedJob) bool { return isMoved[j.PipelineID] })
	for _, p := range moved {
		jobs, err := s.createdJobs(ctx, p.project, p.id)
		switch {
		case errors.Is(err, gitlab.ErrNotFound):
			// Deleted since the pending jobs were read: nothing to come.
		case err != nil:
			// Nothing is kept or marked seen: the moved pipelines are read again
			// next time while they still qualify, and at the next full read.
			return nil, err
		}
		next = append(next, jobs...)
	}
	for _, p := range moved {
		s.seenPipelines[p.id] = p.project
	}
	s.lastCreated = next
	return next, nil
}

// jobEntity is the part of GitLab's job entity shoal reads, for pending and
// created jobs: decoding only these fields costs a fraction of client-go's
// whole Job, and the queue is read at every reconcile.
type jobEntity struct {
	ID             int64      `json:"id"`
	Name           string     `json:"name"`
	Stage          string     `json:"stage"`
	TagList        []string   `json:"tag_list"`
	CreatedAt      *time.Time `json:"created_at"`
	QueuedDuration float64    `json:"queued_duration"`
	Pipeline       struct {
		ID int64 `json:"id"`
	} `json:"pipeline"`
}

// createdJobs lists the created jobs of each pipeline's next stage in a
// project, or in one of its pipelines when pipeline is not 0 (reading up to
// MaxPending created jobs). GitLab creates a pipeline's jobs stage by stage,
// so the next stage is the one of its lowest-numbered created job; the stages
// after it need nothing yet.
func (s *Source) createdJobs(ctx context.Context, pid, pipeline int64) ([]CreatedJob, error) {
	opt := &gitlab.ListJobsOptions{ListOptions: gitlab.ListOptions{PerPage: 100}, Scope: &[]gitlab.BuildStateValue{gitlab.Created}}
	path, what := fmt.Sprintf("projects/%d/jobs", pid), fmt.Sprintf("project %d", pid)
	extra := []gitlab.RequestOptionFunc{s.countJobList()}
	if pipeline != 0 {
		path, what = fmt.Sprintf("projects/%d/pipelines/%d/jobs", pid, pipeline), fmt.Sprintf("pipeline %d of project %d", pipeline, pid)
		extra = nil // not under GitLab's job-list rate limit
	}
	page, err := readPages[jobEntity](ctx, s.c, path, opt, &opt.Page, s.maxPending(), extra...)
	if err != nil {
		return nil, fmt.Errorf("list created jobs of %s: %w", what, err)
	}
	first := map[int64]jobEntity{} // per pipeline, its lowest-numbered created job
	for _, j := range page {
		if f, ok := first[j.Pipeline.ID]; !ok || j.ID < f.ID {
			first[j.Pipeline.ID] = j
		}
	}
	var out []CreatedJob
	for _, j := range page {
		if j.Stage != first[j.Pipeline.ID].Stage {
			continue
		}
		cj := CreatedJob{ID: j.ID, ProjectID: pid, PipelineID: j.Pipeline.ID, Tags: tags.Sorted(j.TagList)}
		if j.CreatedAt != nil {
			cj.CreatedAt = *j.CreatedAt
		}
		out = append(out, cj)
	}
	return out, nil
}

// readPages reads a list at path page by page (opt holds the query, page
// points at its page number), up to limit items (0: every page), for lists
// client-go has no method or type for, or whose type costs more to decode
// than the fields used.
func readPages[T any](ctx context.Context, c *gitlab.Client, path string, opt any, page *int64, limit int, extra ...gitlab.RequestOptionFunc) ([]T, error) {
	return collect(page, limit, func() ([]T, *gitlab.Response, error) {
		req, err := c.NewRequest(http.MethodGet, path, opt, append([]gitlab.RequestOptionFunc{gitlab.WithContext(ctx)}, extra...))
		if err != nil {
			return nil, nil, err
		}
		var items []T
		resp, err := c.Do(req, &items)
		return items, resp, err
	})
}

// collect reads a list page by page: list reads the page *page names, and
// collect moves *page on until GitLab has no next page or limit items are in
// (0: no limit). Errors carry what to do when the token is at fault.
func collect[T any](page *int64, limit int, list func() ([]T, *gitlab.Response, error)) ([]T, error) {
	var out []T
	for {
		items, resp, err := list()
		if err != nil {
			return nil, hint(err)
		}
		out = append(out, items...)
		if resp.NextPage == 0 || limit > 0 && len(out) >= limit {
			return out, nil
		}
		*page = resp.NextPage
	}
}

// apiManager is GET /runners/:id/managers' entity; client-go v1.46.0 has no type for it.
type apiManager struct {
	ID          int64      `json:"id"`
	SystemID    string     `json:"system_id"`
	Status      string     `json:"status"`
	CreatedAt   *time.Time `json:"created_at"`
	ContactedAt *time.Time `json:"contacted_at"`
}

// Managers lists a runner's managers (GET /runners/:id/managers), all of them.
func (s *Source) Managers(ctx context.Context, runnerID int64) ([]Manager, error) {
	opt := gitlab.ListOptions{PerPage: 100}
	page, err := readPages[apiManager](ctx, s.c, fmt.Sprintf("runners/%d/managers", runnerID), &opt, &opt.Page, 0)
	if err != nil {
		return nil, fmt.Errorf("list managers of runner %d: %w", runnerID, err)
	}
	out := make([]Manager, len(page))
	for i, m := range page {
		out[i] = Manager{ID: m.ID, RunnerID: runnerID, SystemID: m.SystemID, Status: m.Status}
		if m.CreatedAt != nil {
			out[i].CreatedAt = *m.CreatedAt
		}
		if m.ContactedAt != nil {
			out[i].ContactedAt = *m.ContactedAt
		}
	}
	return out, nil
}

// RunningJobs lists the jobs one manager is running
// (GET /runners/:id/jobs?status=running&system_id=…): what a drain waits for.
func (s *Source) RunningJobs(ctx context.Context, runnerID int64, systemID string) ([]RunningJob, error) {
	if systemID == "" {
		return nil, fmt.Errorf("running jobs of runner %d: empty system_id", runnerID)
	}
	bySys, err := s.running(ctx, runnerID, systemID)
	if err != nil {
		return nil, err
	}
	return bySys[systemID], nil
}

// runnerJob is the part of GitLab's job entity read here, with runner_manager,
// which client-go v1.46.0's Job lacks.
type runnerJob struct {
	ID            int64              `json:"id"`
	TagList       []string           `json:"tag_list"`
	StartedAt     *time.Time         `json:"started_at"`
	Project       struct{ ID int64 } `json:"project"`
	RunnerManager *struct {
		SystemID string `json:"system_id"`
	} `json:"runner_manager"`
}

// running lists a runner's running jobs by system_id. With systemID empty it
// reads all of them in one listing and groups them by the job's
// runner_manager, which costs one request per runner instead of one per Droplet.
func (s *Source) running(ctx context.Context, runnerID int64, systemID string) (map[string][]RunningJob, error) {
	opt := &gitlab.ListRunnerJobsOptions{ListOptions: gitlab.ListOptions{PerPage: 100}, Status: gitlab.Ptr("running")}
	var extra []gitlab.RequestOptionFunc
	if systemID != "" {
		extra = append(extra, withQuery("system_id", systemID))
	}
	// Every page: a job missing here would let a drain delete its Droplet.
	page, err := readPages[runnerJob](ctx, s.c, fmt.Sprintf("runners/%d/jobs", runnerID), opt, &opt.Page, 0, extra...)
	if err != nil {
		return nil, fmt.Errorf("list running jobs of runner %d: %w", runnerID, err)
	}
	out := map[string][]RunningJob{}
	for _, j := range page {
		sys := systemID
		if sys == "" {
			if j.RunnerManager == nil {
				return nil, errNoRunnerManager
			}
			sys = j.RunnerManager.SystemID
		}
		rj := RunningJob{ID: j.ID, ProjectID: j.Project.ID, Tags: tags.Sorted(j.TagList)}
		if j.StartedAt != nil {
			rj.StartedAt = *j.StartedAt
		}
		out[sys] = append(out[sys], rj)
	}
	return out, nil
}

// errNoRunnerManager: a job listing without runner_manager cannot be split by manager.
var errNoRunnerManager = errors.New("job entities have no runner_manager")

// withQuery adds a query parameter client-go's options type does not know.
func withQuery(key, value string) gitlab.RequestOptionFunc {
	return func(req *retryablehttp.Request) error {
		q := req.URL.Query()
		q.Set(key, value)
		req.URL.RawQuery = q.Encode()
		return nil
	}
}

// hint adds what to do to the GitLab errors people can fix themselves.
func hint(err error) error {
	switch {
	case errors.Is(err, gitlab.ErrNotFound):
		return fmt.Errorf("%w (check the ID or path, and that the token's user can see it)", err)
	case gitlab.HasStatusCode(err, http.StatusUnauthorized):
		return fmt.Errorf("%w (GitLab refused the token: check GITLAB_TOKEN)", err)
	case gitlab.HasStatusCode(err, http.StatusForbidden):
		return fmt.Errorf("%w (the token lacks access: it needs the read_api scope, and owner or maintainer access to the runners)", err)
	}
	return err
}
