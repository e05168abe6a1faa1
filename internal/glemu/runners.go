package glemu

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash/fnv"
	"slices"
	"time"

	"github.com/shoalci/shoal/internal/clock"
)

// A runner is what GitLab creates when someone registers a runner: an ID, a
// glrt- authentication token and its tags. Every machine that runs
// gitlab-runner with that token appears as one runner manager of it, told
// apart by its system_id; shoal registers one manager per Droplet.
type runner struct {
	id          int64
	token       string
	description string
	tags        []string // sorted
	runUntagged bool
	createdAt   time.Time
	covers      map[*tagSet]bool // cache: may this runner take jobs with these tags?
	managers    int              // registered managers
	exited      int              // of those, drained ones that have exited
	running     int              // jobs its managers hold, together
	history     []*job           // every job it took, in order
}

type manager struct {
	id       int64
	runner   *runner
	systemID string
	capacity int
	interval time.Duration
	phase    time.Duration // ticks at epoch + phase + k*interval
	booting  bool
	paused   bool
	draining bool // paused for good: Handover gives it nothing either
	// exitedAt is when a draining manager's last job ended: gitlab-runner
	// exits then, and GitLab hears from it no more (zero: still running).
	exitedAt  time.Time
	createdAt time.Time
	lastPoll  time.Duration // since the epoch
	polled    bool
	gone      bool   // unregistered
	running   []*job // running jobs, in the order taken
}

// RunnerSpec describes a runner to create.
type RunnerSpec struct {
	Description string
	Tags        []string
	// RunUntagged lets the runner take jobs without tags; GitLab's default is
	// true only for a runner without tags.
	RunUntagged bool
}

// Runner is a created runner.
type Runner struct {
	ID    int64
	Token string // glrt-…, shared by all its managers
}

// CreateRunner creates an instance runner. Its token is derived from its ID,
// so a replay gets the same tokens.
func (s *Server) CreateRunner(spec RunnerSpec) (Runner, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range spec.Tags {
		if t == "" {
			return Runner{}, fmt.Errorf("create runner %q: empty tag", spec.Description)
		}
	}
	s.lastID.runner++
	id := s.lastID.runner
	sum := sha256.Sum256(fmt.Appendf(nil, "glemu runner %d", id))
	tags := slices.Clone(spec.Tags)
	slices.Sort(tags)
	r := &runner{
		id:          id,
		token:       "glrt-" + hex.EncodeToString(sum[:])[:20],
		description: spec.Description,
		tags:        slices.Compact(tags),
		runUntagged: spec.RunUntagged || len(spec.Tags) == 0,
		createdAt:   s.clk.Now(),
		covers:      map[*tagSet]bool{},
	}
	s.runners[id] = r
	s.runnerList = append(s.runnerList, r)
	return Runner{ID: id, Token: r.token}, nil
}

// canTake reports whether the runner's tags include all of the job tags.
func (r *runner) canTake(ts *tagSet) bool {
	ok, seen := r.covers[ts]
	if seen {
		return ok
	}
	if len(ts.tags) == 0 {
		ok = r.runUntagged
	} else {
		ok = true
		for _, t := range ts.tags {
			if _, found := slices.BinarySearch(r.tags, t); !found {
				ok = false
				break
			}
		}
	}
	r.covers[ts] = ok
	return ok
}

// ManagerOptions describe one gitlab-runner process (one Droplet).
type ManagerOptions struct {
	// Capacity is how many jobs it runs at once (gitlab-runner's concurrent /
	// capacity_per_instance). Default 1.
	Capacity int
	// CheckInterval is how often it asks GitLab for jobs. Default 3 s.
	CheckInterval time.Duration
	// Booting registers the manager in acceptance mode: it takes jobs up to its
	// capacity at once, but their scripts start only when SetReady is called.
	// This is docker+machine with IdleCount = 0, which accepts a job and then
	// creates the machine to run it on. Its capacity is then the runner's
	// limit: it takes a job only while all the runner's managers together hold
	// fewer, as docker+machine's one process runs every machine's jobs.
	Booting bool
}

// RegisterManager adds a runner manager: the runner with this token, running
// on a machine with this system_id. It starts polling at its first tick.
func (s *Server) RegisterManager(token, systemID string, opts ManagerOptions) error {
	s.mu.Lock()
	r := s.runnerByToken(token)
	if r == nil {
		s.mu.Unlock()
		return fmt.Errorf("register manager %s: runner token: %w", systemID, ErrNotFound)
	}
	if systemID == "" {
		s.mu.Unlock()
		return fmt.Errorf("register manager for runner %d: empty system_id", r.id)
	}
	if s.manager(r, systemID) != nil {
		s.mu.Unlock()
		return fmt.Errorf("register manager %s: runner %d already has it", systemID, r.id)
	}
	if opts.Capacity == 0 {
		opts.Capacity = 1
	}
	if opts.CheckInterval == 0 {
		opts.CheckInterval = DefaultCheckInterval
	}
	if opts.Capacity < 0 || opts.CheckInterval < 0 {
		s.mu.Unlock()
		return fmt.Errorf("register manager %s: capacity %d and check interval %v must be positive", systemID, opts.Capacity, opts.CheckInterval)
	}
	s.lastID.manager++
	m := &manager{
		id:        s.lastID.manager,
		runner:    r,
		systemID:  systemID,
		capacity:  opts.Capacity,
		interval:  opts.CheckInterval,
		phase:     phase(systemID, opts.CheckInterval),
		booting:   opts.Booting,
		createdAt: s.clk.Now(),
	}
	s.managers = append(s.managers, m)
	r.managers++
	s.schedule()
	s.unlockAndFlush()
	return nil
}

// SetReady ends a manager's acceptance mode: the jobs it accepted while its
// machine booted start now.
func (s *Server) SetReady(token, systemID string) error {
	return s.withManager(token, systemID, "set ready", func(m *manager) {
		if !m.booting {
			return
		}
		m.booting = false
		for _, j := range m.running {
			s.start(j)
		}
	})
}

// Handover moves the jobs a booting manager holds to a ready manager of the
// same runner, while it has free slots; they start there at once. This is
// docker+machine's manager: it accepts a job, provisions a machine, and runs
// the job on it when the machine is up.
func (s *Server) Handover(token, fromSystemID, toSystemID string) (int, error) {
	moved := 0
	err := s.withManager(token, toSystemID, "hand over to", func(to *manager) {
		from := s.manager(to.runner, fromSystemID)
		if from == nil || !from.booting || to.booting || to.draining {
			return
		}
		for len(from.running) > 0 && len(to.running) < to.capacity {
			j := from.running[0]
			from.running = from.running[1:]
			j.manager = to
			to.running = append(to.running, j)
			s.start(j)
			moved++
		}
	})
	return moved, err
}

// Pause is the drain switch: the manager stops asking for jobs; the jobs it
// runs finish normally.
func (s *Server) Pause(token, systemID string) error {
	return s.withManager(token, systemID, "pause", func(m *manager) { m.paused = true })
}

// SetCapacity changes how many jobs a manager holds at once (its runner's
// limit); jobs it already holds keep running.
func (s *Server) SetCapacity(token, systemID string, capacity int) error {
	if capacity < 1 {
		return fmt.Errorf("set capacity of manager %s: %d is not at least 1", systemID, capacity)
	}
	return s.withManager(token, systemID, "set capacity of", func(m *manager) { m.capacity = capacity })
}

// Drain pauses a manager whose machine is going away: it asks for no jobs,
// and Handover gives it none, so the jobs it runs once Drain returns are all
// it will ever run.
func (s *Server) Drain(token, systemID string) error {
	return s.withManager(token, systemID, "drain", func(m *manager) {
		m.paused, m.draining = true, true
		s.noteExit(m)
	})
}

// noteExit dates a draining manager's exit once it holds no job.
func (s *Server) noteExit(m *manager) {
	if m.draining && len(m.running) == 0 && m.exitedAt.IsZero() {
		m.exitedAt = s.clk.Now()
		m.runner.exited++
	}
}

// Resume undoes Pause (not Drain).
func (s *Server) Resume(token, systemID string) error {
	return s.withManager(token, systemID, "resume", func(m *manager) { m.paused = m.draining })
}

// Unregister removes a manager, as when its Droplet is deleted. Jobs still
// running on it fail with runner_system_failure, as they would in GitLab once
// the machine is gone; shoal must never let that happen.
func (s *Server) Unregister(token, systemID string) error {
	return s.withManager(token, systemID, "unregister", func(m *manager) {
		for _, j := range slices.Clone(m.running) {
			s.complete(j, StatusFailed, "runner_system_failure")
		}
		s.managers = slices.DeleteFunc(s.managers, func(x *manager) bool { return x == m })
		m.gone = true
		m.runner.managers--
		if !m.exitedAt.IsZero() {
			m.runner.exited--
		}
	})
}

func (s *Server) withManager(token, systemID, what string, f func(*manager)) error {
	s.mu.Lock()
	r := s.runnerByToken(token)
	var m *manager
	if r != nil {
		m = s.manager(r, systemID)
	}
	if m == nil {
		s.mu.Unlock()
		return fmt.Errorf("%s manager %s: %w", what, systemID, ErrNotFound)
	}
	f(m)
	s.schedule()
	s.unlockAndFlush()
	return nil
}

func (s *Server) runnerByToken(token string) *runner {
	for _, r := range s.runnerList {
		if r.token == token {
			return r
		}
	}
	return nil
}

func (s *Server) manager(r *runner, systemID string) *manager {
	for _, m := range s.managers {
		if m.runner == r && m.systemID == systemID {
			return m
		}
	}
	return nil
}

// ManagerInfo is a runner manager as the simulator sees it.
type ManagerInfo struct {
	RunnerID int64
	SystemID string
	Capacity int
	Running  int // jobs taken and not finished, including those waiting for boot
	Booting  bool
	Paused   bool
	// Jobs are the IDs of the jobs it holds, in the order it took them.
	Jobs []int64
}

// Managers lists the registered managers in registration order.
func (s *Server) Managers() []ManagerInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]ManagerInfo, len(s.managers))
	for i, m := range s.managers {
		out[i] = ManagerInfo{RunnerID: m.runner.id, SystemID: m.systemID, Capacity: m.capacity,
			Running: len(m.running), Booting: m.booting, Paused: m.paused, Jobs: make([]int64, len(m.running))}
		for k, j := range m.running {
			out[i].Jobs[k] = j.id
		}
	}
	return out
}

// ---- polling ----
//
// Each manager polls at its ticks, epoch + phase + k*check_interval, and takes
// the oldest pending jobs it may run while it has free slots (gitlab-runner asks
// again at once after it receives a job, so one tick can fill every slot).
// Polls that would find nothing cost nothing here: one timer is armed, for the
// earliest tick of any manager that has a free slot and a job it could take,
// and it is recomputed whenever jobs, slots or managers change. With nothing
// pending no timer is armed at all.

type pollTimer struct {
	timer clock.Timer
	at    time.Duration // since the epoch
	gen   uint64
}

// phase staggers managers' ticks deterministically, by a hash of the
// system_id, in whole milliseconds (the API's time resolution) when the
// interval allows.
func phase(systemID string, interval time.Duration) time.Duration {
	h := fnv.New64a()
	h.Write([]byte(systemID))
	unit := time.Millisecond
	if interval < 10*time.Millisecond {
		unit = 1
	}
	return time.Duration(h.Sum64()%uint64(interval/unit)) * unit
}

func (m *manager) hungry() bool {
	held := len(m.running)
	if m.booting {
		held = m.runner.running // see ManagerOptions.Booting
	}
	return !m.paused && held < m.capacity
}

// nextTick is the manager's first tick at or after now (both measured from
// the epoch) at which it has not polled yet. Plain durations, not time.Time:
// this runs for every manager on every change of the queue.
func (m *manager) nextTick(now time.Duration) time.Duration {
	off := (now - m.phase) % m.interval
	if off < 0 {
		off += m.interval
	}
	t := now
	if off != 0 {
		t = now + m.interval - off
	}
	if m.polled && t <= m.lastPoll {
		t += m.interval
	}
	return t
}

// lastTick is the manager's latest tick at or before now, or before it
// exited: GitLab's contacted_at.
func (m *manager) lastTick(now, epoch time.Time) time.Time {
	if !m.exitedAt.IsZero() && m.exitedAt.Before(now) {
		now = m.exitedAt
	}
	d := now.Sub(epoch)
	off := (d - m.phase) % m.interval
	if off < 0 {
		off += m.interval
	}
	t := epoch.Add(d - off)
	if t.Before(m.createdAt) {
		return m.createdAt
	}
	return t
}

// wantsPoll reports whether a poll by m now would take a job.
func (s *Server) wantsPoll(m *manager) bool {
	if !m.hungry() {
		return false
	}
	for _, ts := range s.tagSetList {
		if ts.waiting() > 0 && m.runner.canTake(ts) {
			return true
		}
	}
	return false
}

// schedule arms the poll timer for the earliest useful tick. Call with s.mu held.
func (s *Server) schedule() {
	var best time.Duration
	found := false
	if s.pending > 0 {
		now := s.clk.Now().Sub(s.epoch)
		for _, m := range s.managers {
			if !s.wantsPoll(m) {
				continue
			}
			if t := m.nextTick(now); !found || t < best {
				best, found = t, true
			}
		}
	}
	if s.poll.timer != nil {
		if found && s.poll.at == best {
			return
		}
		s.poll.timer.Stop()
		s.poll.timer = nil
	}
	if !found {
		return
	}
	s.poll.gen++
	gen := s.poll.gen
	s.poll.at = best
	s.poll.timer = s.clk.AfterFunc(s.epoch.Add(best).Sub(s.clk.Now()), func() { s.firePoll(gen) })
}

// firePoll lets every manager whose tick has come poll, in tick order (then
// registration order), and re-arms the timer.
func (s *Server) firePoll(gen uint64) {
	s.mu.Lock()
	if gen != s.poll.gen { // superseded by a later schedule
		s.mu.Unlock()
		return
	}
	s.poll.timer = nil
	now := s.clk.Now().Sub(s.epoch)
	type due struct {
		m    *manager
		tick time.Duration
		idx  int
	}
	var dues []due
	for i, m := range s.managers {
		if !s.wantsPoll(m) {
			continue
		}
		// With a real clock the timer may fire late: a tick missed by then still counts.
		if t := m.nextTick(s.poll.at); t <= now {
			dues = append(dues, due{m, t, i})
		}
	}
	slices.SortFunc(dues, func(a, b due) int { return cmp.Or(cmp.Compare(a.tick, b.tick), cmp.Compare(a.idx, b.idx)) })
	for _, d := range dues {
		d.m.polled, d.m.lastPoll = true, d.tick
		s.take(d.m)
	}
	s.schedule()
	s.unlockAndFlush()
}

// take gives m the oldest pending jobs it may run, while it has free slots.
// Which manager gets a job is GitLab's choice: the first to ask.
func (s *Server) take(m *manager) {
	now := s.clk.Now()
	for m.hungry() {
		var best *tagSet
		for _, ts := range s.tagSetList {
			if ts.waiting() == 0 || !m.runner.canTake(ts) {
				continue
			}
			if best == nil || ts.queue[ts.head].seq < best.queue[best.head].seq {
				best = ts
			}
		}
		if best == nil {
			return
		}
		j := best.pop()
		s.pending--
		s.setStatus(j, StatusRunning)
		j.startedAt = now
		j.manager = m
		m.running = append(m.running, j)
		m.runner.running++
		m.runner.history = append(m.runner.history, j)
		pl := j.pipeline
		if pl.status != StatusRunning {
			pl.status = StatusRunning
			if pl.startedAt.IsZero() {
				pl.startedAt = now
			}
		}
		pl.updatedAt = now
		if !m.booting {
			s.start(j)
		}
		s.emit(j)
	}
}
