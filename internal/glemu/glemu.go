// Package glemu emulates the part of GitLab that a runner autoscaler sees: the
// REST API v4 endpoints for projects, groups, pipelines, jobs and runner
// managers, as gitlab.com/gitlab-org/api/client-go reads them; CI pipelines whose
// jobs move created → pending → running → success; runner managers (one per
// runner Droplet) that poll for jobs every check_interval; and Job Hook webhooks.
//
// Everything runs on an injected clock. Under clock.Virtual the emulator is
// deterministic: the same calls in the same order give the same job assignments,
// which is what lets the simulator replay a week of CI in seconds.
//
// Locking: one mutex guards the whole model. Events (job status changes) are
// queued while it is held and delivered to observers and webhooks after it is
// released, in order, so an observer may call back into the Server.
package glemu

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/shoalci/shoal/internal/clock"
)

// Job statuses, as GitLab names them.
const (
	StatusCreated = "created"
	StatusPending = "pending"
	StatusRunning = "running"
	StatusSuccess = "success"
	StatusFailed  = "failed"
	StatusSkipped = "skipped"
)

// DefaultCheckInterval is GitLab Runner's default check_interval.
const DefaultCheckInterval = 3 * time.Second

// Options configure a Server.
type Options struct {
	// Clock drives job durations and runner polling. Default: clock.Real{}.
	Clock clock.Clock
	// Tokens are the access tokens the API accepts in PRIVATE-TOKEN (or as
	// "Authorization: Bearer"). With none, every request is refused with 401.
	Tokens []string
	// ExternalURL is the GitLab URL used in web_url fields.
	// Default: "https://gitlab.example.com".
	ExternalURL string
	// Logger reports webhook delivery problems. Default: slog.Default().
	Logger *slog.Logger
	// NoRunnerManagerInJobs leaves runner_manager out of job entities, as
	// GitLab versions before it was added do, for testing clients' fallbacks.
	NoRunnerManagerInJobs bool
	// JobsPerMinute, when above 0, limits GET /projects/:id/jobs to that many
	// requests a minute per access token, as GitLab's jobs_index rate limit
	// (project_jobs_api_rate_limit, 600 by default since GitLab 16.x, and on
	// gitlab.com) does: in fixed one-minute windows of the clock, counting
	// every request, refused ones too, and answering 429 with Retry-After: 60
	// and no RateLimit-* headers beyond it.
	JobsPerMinute int
}

// Server is the emulated GitLab. It is an http.Handler serving /api/v4/...;
// its methods are the Go API a simulator uses to create work and runners.
type Server struct {
	mu     sync.Mutex
	clk    clock.Clock
	epoch  time.Time // polling ticks are counted from here
	tokens map[string]bool
	extURL string
	log    *slog.Logger
	mux    *http.ServeMux

	noRunnerManager bool

	jobsLimit  int            // Options.JobsPerMinute
	jobsWindow int64          // the minute (Unix time / 60) jobsCount counts
	jobsCount  map[string]int // GET /projects/:id/jobs per token in that minute

	groups     map[int64]*group
	groupList  []*group
	projects   map[int64]*project
	projList   []*project
	pipelines  map[int64]*pipeline
	jobs       []*job // jobs[id-1]
	runners    map[int64]*runner
	runnerList []*runner
	managers   []*manager // registered managers, in registration order
	lastID     struct{ group, project, pipeline, runner, manager int64 }

	tagSets    map[string]*tagSet
	tagSetList []*tagSet
	pending    int    // jobs in status pending
	seq        uint64 // queue order of pending jobs

	poll pollTimer

	counts     Counts
	outbox     []Event
	delivering bool
	observers  []func(Event)
	hooks      []*hook
}

// New returns an emulated GitLab with no projects, runners or pipelines.
func New(opts Options) *Server {
	clk := opts.Clock
	if clk == nil {
		clk = clock.Real{}
	}
	ext := strings.TrimSuffix(opts.ExternalURL, "/")
	if ext == "" {
		ext = "https://gitlab.example.com"
	}
	s := &Server{
		clk:    clk,
		epoch:  clk.Now(),
		tokens: map[string]bool{},
		extURL: ext,
		log:    cmp.Or(opts.Logger, slog.Default()),

		noRunnerManager: opts.NoRunnerManagerInJobs,
		jobsLimit:       opts.JobsPerMinute,
		groups:          map[int64]*group{},
		projects:        map[int64]*project{},
		pipelines:       map[int64]*pipeline{},
		runners:         map[int64]*runner{},
		tagSets:         map[string]*tagSet{},
	}
	for _, t := range opts.Tokens {
		s.tokens[t] = true
	}
	s.routes()
	return s
}

// AddToken makes the API accept another access token.
func (s *Server) AddToken(token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokens[token] = true
}

// Counts are the numbers of jobs in each status.
type Counts struct {
	Created, Pending, Running, Success, Failed, Skipped int
}

func (c *Counts) add(status string, d int) {
	switch status {
	case StatusCreated:
		c.Created += d
	case StatusPending:
		c.Pending += d
	case StatusRunning:
		c.Running += d
	case StatusSuccess:
		c.Success += d
	case StatusFailed:
		c.Failed += d
	case StatusSkipped:
		c.Skipped += d
	}
}

// Counts reports how many jobs are in each status now.
func (s *Server) Counts() Counts {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts
}

// ErrNotFound is returned for an unknown project, group, runner or manager.
var ErrNotFound = errors.New("not found")

// ---- groups and projects ----

type group struct {
	id        int64
	name      string
	path      string // full path, e.g. "acme/backend"
	parent    *group
	createdAt time.Time
}

type project struct {
	id        int64
	name      string
	path      string // full path, e.g. "acme/backend/api"
	group     *group // nil for a project in a user namespace
	createdAt time.Time
	pipelines []*pipeline
	jobs      []*job // in id order
	// jobs[:settled] have all finished: a listing of unfinished jobs (the
	// autoscaler's, on every reconcile) starts there, not at the first job.
	settled int
	lastIID int64

	ciOff    bool     // CI/CD turned off: job and pipeline endpoints answer 403
	archived bool     // read-only: no new pipelines
	shared   []*group // groups the project is shared with (not its own)
}

// AddGroup creates a group (a subgroup when parentID is not 0) and returns its ID.
func (s *Server) AddGroup(name string, parentID int64) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	path, parent, err := s.childPath("group", name, parentID, "")
	if err != nil {
		return 0, err
	}
	for _, g := range s.groupList {
		if g.path == path {
			return 0, fmt.Errorf("group %q already exists", path)
		}
	}
	s.lastID.group++
	g := &group{id: s.lastID.group, name: name, path: path, parent: parent, createdAt: s.clk.Now()}
	s.groups[g.id] = g
	s.groupList = append(s.groupList, g)
	return g.id, nil
}

// childPath checks a new group's or project's name and finds its parent group
// (none when parentID is 0, in which case the path is outside+name). Call with s.mu held.
func (s *Server) childPath(kind, name string, parentID int64, outside string) (string, *group, error) {
	if !validPathSegment(name) {
		return "", nil, fmt.Errorf("%s name %q: use letters, digits, '-', '_' and '.'", kind, name)
	}
	if parentID == 0 {
		return outside + name, nil, nil
	}
	parent := s.groups[parentID]
	if parent == nil {
		return "", nil, fmt.Errorf("group %d: %w", parentID, ErrNotFound)
	}
	return parent.path + "/" + name, parent, nil
}

// AddProject creates a project in a group (or, with groupID 0, in the "root"
// user's namespace) and returns its ID.
func (s *Server) AddProject(name string, groupID int64) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	path, g, err := s.childPath("project", name, groupID, "root/")
	if err != nil {
		return 0, err
	}
	for _, p := range s.projList {
		if p.path == path {
			return 0, fmt.Errorf("project %q already exists", path)
		}
	}
	s.lastID.project++
	p := &project{id: s.lastID.project, name: name, path: path, group: g, createdAt: s.clk.Now()}
	s.projects[p.id] = p
	s.projList = append(s.projList, p)
	return p.id, nil
}

// SetCICD turns a project's CI/CD feature on or off (GitLab's
// builds_access_level). With it off, GitLab answers the project's job and
// pipeline endpoints with 403 Forbidden, and no pipeline can be created.
func (s *Server) SetCICD(projectID int64, on bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.projects[projectID]
	if p == nil {
		return fmt.Errorf("project %d: %w", projectID, ErrNotFound)
	}
	p.ciOff = !on
	return nil
}

// ArchiveProject archives a project: the API lists it with archived: true
// (and filters it by the archived parameter), and it runs no new pipelines.
func (s *Server) ArchiveProject(projectID int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.projects[projectID]
	if p == nil {
		return fmt.Errorf("project %d: %w", projectID, ErrNotFound)
	}
	p.archived = true
	return nil
}

// ShareProject shares a project with a group, as inviting a group to a
// project does: the group's project listing then includes it, unless asked
// with with_shared=false.
func (s *Server) ShareProject(projectID, groupID int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, g := s.projects[projectID], s.groups[groupID]
	switch {
	case p == nil:
		return fmt.Errorf("project %d: %w", projectID, ErrNotFound)
	case g == nil:
		return fmt.Errorf("group %d: %w", groupID, ErrNotFound)
	case !slices.Contains(p.shared, g):
		p.shared = append(p.shared, g)
	}
	return nil
}

func validPathSegment(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// inGroup reports whether p lives in g or, with subgroups, below it.
func (p *project) inGroup(g *group, subgroups bool) bool {
	if p.group == g {
		return true
	}
	if !subgroups {
		return false
	}
	for a := p.group; a != nil; a = a.parent {
		if a == g {
			return true
		}
	}
	return false
}

// ---- pipelines and jobs ----

// StageSpec describes one stage of a pipeline to create.
type StageSpec struct {
	Name string // default "stage-<k>"
	Jobs []JobSpec
}

// JobSpec describes one job: how long it runs once started, and the runner tags it needs.
type JobSpec struct {
	Name     string // default "<stage>-<i>"
	Duration time.Duration
	Tags     []string
}

// PipelineRef identifies a created pipeline and its jobs, JobIDs[k][i] being
// the i-th job of stage k.
type PipelineRef struct {
	ID     int64
	JobIDs [][]int64
}

type pipeline struct {
	id, iid    int64
	project    *project
	status     string
	createdAt  time.Time
	startedAt  time.Time
	finishedAt time.Time
	updatedAt  time.Time
	stages     []*stage
	current    int // index of the stage being run
}

type stage struct {
	name       string
	jobs       []*job
	unfinished int
	failed     bool
}

type job struct {
	id        int64
	name      string
	stage     *stage
	stageIdx  int
	pipeline  *pipeline
	tags      []string // sorted, as GitLab lists tag_list
	ts        *tagSet
	duration  time.Duration
	status    string
	seq       uint64 // queue order while pending
	createdAt time.Time
	queuedAt  time.Time
	startedAt time.Time // picked by a runner (GitLab's started_at)
	execAt    time.Time // the job's script began: equals startedAt unless the manager was booting
	finished  time.Time
	failure   string
	manager   *manager // who took it; kept after the manager leaves
	timer     clock.Timer
}

// CreatePipeline creates a pipeline in a project at the current clock time.
// Stage 0's jobs become pending at once; stage k's when all of stage k-1 have
// finished.
func (s *Server) CreatePipeline(projectID int64, stages []StageSpec) (PipelineRef, error) {
	s.mu.Lock()
	p := s.projects[projectID]
	if p == nil {
		s.mu.Unlock()
		return PipelineRef{}, fmt.Errorf("project %d: %w", projectID, ErrNotFound)
	}
	if err := validStages(stages); err != nil {
		s.mu.Unlock()
		return PipelineRef{}, err
	}
	if p.ciOff || p.archived {
		s.mu.Unlock()
		return PipelineRef{}, fmt.Errorf("project %d is archived or has CI/CD turned off: it runs no pipelines", projectID)
	}
	now := s.clk.Now()
	s.lastID.pipeline++
	p.lastIID++
	pl := &pipeline{id: s.lastID.pipeline, iid: p.lastIID, project: p, status: StatusCreated, createdAt: now, updatedAt: now}
	ref := PipelineRef{ID: pl.id, JobIDs: make([][]int64, len(stages))}
	for k, spec := range stages {
		st := &stage{name: spec.Name, unfinished: len(spec.Jobs)}
		if st.name == "" {
			st.name = fmt.Sprintf("stage-%d", k)
		}
		for i, js := range spec.Jobs {
			j := &job{
				id:        int64(len(s.jobs) + 1),
				name:      js.Name,
				stage:     st,
				stageIdx:  k,
				pipeline:  pl,
				duration:  js.Duration,
				status:    StatusCreated,
				createdAt: now,
			}
			if j.name == "" {
				j.name = fmt.Sprintf("%s-%d", st.name, i+1)
			}
			j.ts = s.tagSet(js.Tags)
			j.tags = j.ts.tags
			s.jobs = append(s.jobs, j)
			p.jobs = append(p.jobs, j)
			st.jobs = append(st.jobs, j)
			ref.JobIDs[k] = append(ref.JobIDs[k], j.id)
			s.counts.add(StatusCreated, 1)
			s.emit(j)
		}
		pl.stages = append(pl.stages, st)
	}
	s.pipelines[pl.id] = pl
	p.pipelines = append(p.pipelines, pl)
	s.enqueueStage(pl)
	s.schedule()
	s.unlockAndFlush()
	return ref, nil
}

func validStages(stages []StageSpec) error {
	if len(stages) == 0 {
		return errors.New("a pipeline needs at least one stage")
	}
	for k, st := range stages {
		if len(st.Jobs) == 0 {
			return fmt.Errorf("stage %d has no jobs", k)
		}
		for i, j := range st.Jobs {
			if j.Duration <= 0 {
				return fmt.Errorf("stage %d job %d: duration %v must be > 0", k, i, j.Duration)
			}
			for _, t := range j.Tags {
				if t == "" {
					return fmt.Errorf("stage %d job %d: empty tag", k, i)
				}
			}
		}
	}
	return nil
}

// enqueueStage makes the current stage's jobs pending.
func (s *Server) enqueueStage(pl *pipeline) {
	now := s.clk.Now()
	if pl.status == StatusCreated {
		pl.status = StatusPending
	}
	pl.updatedAt = now
	for _, j := range pl.stages[pl.current].jobs {
		s.setStatus(j, StatusPending)
		j.queuedAt = now
		s.seq++
		j.seq = s.seq
		j.ts.queue = append(j.ts.queue, j)
		s.pending++
		s.emit(j)
	}
}

func (s *Server) setStatus(j *job, status string) {
	s.counts.add(j.status, -1)
	s.counts.add(status, 1)
	j.status = status
}

// start begins a job's script: it finishes after its duration.
func (s *Server) start(j *job) {
	j.execAt = s.clk.Now()
	j.timer = s.clk.AfterFunc(j.duration, func() { s.finish(j) })
}

func (s *Server) finish(j *job) {
	s.mu.Lock()
	if j.status != StatusRunning { // the job failed with its manager meanwhile
		s.mu.Unlock()
		return
	}
	s.complete(j, StatusSuccess, "")
	s.schedule()
	s.unlockAndFlush()
}

// complete ends a running job and moves its pipeline on.
func (s *Server) complete(j *job, status, failure string) {
	now := s.clk.Now()
	s.setStatus(j, status)
	j.finished = now
	j.failure = failure
	if j.timer != nil {
		j.timer.Stop()
		j.timer = nil
	}
	if m := j.manager; m != nil {
		m.running = slices.DeleteFunc(m.running, func(x *job) bool { return x == j })
		m.runner.running--
		s.noteExit(m)
	}
	s.emit(j)

	pl := j.pipeline
	pl.updatedAt = now
	st := j.stage
	st.unfinished--
	if status != StatusSuccess {
		st.failed = true
	}
	if st.unfinished > 0 {
		return
	}
	if st.failed {
		// GitLab skips the later stages of a failed pipeline.
		for _, later := range pl.stages[pl.current+1:] {
			for _, lj := range later.jobs {
				s.setStatus(lj, StatusSkipped)
				s.emit(lj)
			}
		}
		pl.status, pl.finishedAt = StatusFailed, now
		return
	}
	if pl.current+1 < len(pl.stages) {
		pl.current++
		s.enqueueStage(pl)
		return
	}
	pl.status, pl.finishedAt = StatusSuccess, now
}

// ---- tag sets and the pending queue ----

// tagSet is one distinct set of job tags, with the FIFO of its pending jobs.
// Jobs enter in the order they become pending and leave from the head, so
// the oldest pending job a runner may take is always at some queue's head.
type tagSet struct {
	key   string
	tags  []string
	queue []*job
	head  int
}

func (s *Server) tagSet(tags []string) *tagSet {
	sorted := slices.Clone(tags)
	slices.Sort(sorted)
	sorted = slices.Compact(sorted)
	key := strings.Join(sorted, "\x00")
	if ts, ok := s.tagSets[key]; ok {
		return ts
	}
	ts := &tagSet{key: key, tags: sorted}
	s.tagSets[key] = ts
	s.tagSetList = append(s.tagSetList, ts)
	return ts
}

func (ts *tagSet) waiting() int { return len(ts.queue) - ts.head }

func (ts *tagSet) pop() *job {
	j := ts.queue[ts.head]
	ts.queue[ts.head] = nil
	ts.head++
	if ts.head > 64 && ts.head*2 > len(ts.queue) {
		n := copy(ts.queue, ts.queue[ts.head:])
		clear(ts.queue[n:])
		ts.queue = ts.queue[:n]
		ts.head = 0
	}
	return j
}

// ---- events, observers and delivery ----

// Event reports one job status change, with the job as it is after the change.
type Event struct {
	Time time.Time
	Job  JobInfo
}

// Observe registers f to be called on every job status change, in order.
// f runs after the Server's lock is released and may call the Server.
func (s *Server) Observe(f func(Event)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.observers = append(s.observers, f)
}

func (s *Server) emit(j *job) {
	if len(s.observers) == 0 && len(s.hooks) == 0 {
		return
	}
	s.outbox = append(s.outbox, Event{Time: s.clk.Now(), Job: s.info(j)})
}

// unlockAndFlush releases s.mu and delivers queued events. Only one goroutine
// delivers at a time, which keeps events in order; a delivery that causes more
// events (an observer calling back) has them delivered by the same loop.
func (s *Server) unlockAndFlush() {
	if s.delivering {
		s.mu.Unlock()
		return
	}
	s.delivering = true
	for len(s.outbox) > 0 {
		evs := s.outbox
		s.outbox = nil
		observers := s.observers
		hooks := s.hooks
		s.mu.Unlock()
		for _, ev := range evs {
			for _, f := range observers {
				f(ev)
			}
			for _, h := range hooks {
				h.send(ev)
			}
		}
		s.mu.Lock()
	}
	s.delivering = false
	s.mu.Unlock()
}

// JobInfo is a job as the simulator sees it.
type JobInfo struct {
	ID         int64
	Name       string
	Stage      int
	StageName  string
	PipelineID int64
	ProjectID  int64
	Project    string // full path
	Tags       []string
	Status     string
	Duration   time.Duration // script run time
	CreatedAt  time.Time
	QueuedAt   time.Time // became pending
	StartedAt  time.Time // taken by a runner manager
	// ExecStartedAt is when the script began. It is StartedAt, except on a
	// manager in acceptance mode, where the job waits for the machine to boot.
	ExecStartedAt time.Time
	FinishedAt    time.Time
	FailureReason string
	RunnerID      int64
	RunnerName    string // the runner's description
	RunnerTags    []string
	SystemID      string
}

// Wait is how long the job waited between becoming pending and its script
// starting: the figure a CI user feels. It is 0 until the script starts.
func (j JobInfo) Wait() time.Duration {
	if j.ExecStartedAt.IsZero() {
		return 0
	}
	return j.ExecStartedAt.Sub(j.QueuedAt)
}

func (s *Server) info(j *job) JobInfo {
	in := JobInfo{
		ID: j.id, Name: j.name, Stage: j.stageIdx, StageName: j.stage.name,
		PipelineID: j.pipeline.id, ProjectID: j.pipeline.project.id, Project: j.pipeline.project.path,
		Tags: j.tags, Status: j.status, Duration: j.duration,
		CreatedAt: j.createdAt, QueuedAt: j.queuedAt, StartedAt: j.startedAt, ExecStartedAt: j.execAt,
		FinishedAt: j.finished, FailureReason: j.failure,
	}
	if m := j.manager; m != nil {
		in.RunnerID, in.SystemID = m.runner.id, m.systemID
		in.RunnerName, in.RunnerTags = m.runner.description, m.runner.tags
	}
	return in
}

// Job returns one job.
func (s *Server) Job(id int64) (JobInfo, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if id < 1 || id > int64(len(s.jobs)) {
		return JobInfo{}, false
	}
	return s.info(s.jobs[id-1]), true
}

// Jobs returns every job, in ID order.
func (s *Server) Jobs() []JobInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]JobInfo, len(s.jobs))
	for i, j := range s.jobs {
		out[i] = s.info(j)
	}
	return out
}

// PendingJobs returns the jobs waiting for a runner, oldest first.
func (s *Server) PendingJobs() []JobInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []JobInfo
	for _, ts := range s.tagSetList {
		for _, j := range ts.queue[ts.head:] {
			out = append(out, s.info(j))
		}
	}
	slices.SortFunc(out, func(a, b JobInfo) int {
		return cmp.Or(a.QueuedAt.Compare(b.QueuedAt), cmp.Compare(a.ID, b.ID))
	})
	return out
}
