// Package reconcile is the only part of the autoscaler that acts: each Step
// reads the fleet from DigitalOcean (the source of truth, so a restarted
// autoscaler adopts what it finds) and the demand from GitLab, asks the policy
// what to do, and applies the decisions through internal/cloud within the API's
// rate budget, draining a runner before its Droplet is deleted.
package reconcile

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	mrand "math/rand/v2"
	"slices"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/shoalci/shoal/internal/clock"
	"github.com/shoalci/shoal/internal/cloud"
	"github.com/shoalci/shoal/internal/config"
	"github.com/shoalci/shoal/internal/demand"
	"github.com/shoalci/shoal/internal/policy"
)

// Tags every runner Droplet carries: FleetTag marks shoal's Droplets, and
// PoolTagPrefix+pool names the pool.
const (
	FleetTag      = "shoal"
	PoolTagPrefix = "shoal-pool-"
)

// Demand is where pending jobs come from (demand.Source against GitLab).
type Demand interface {
	Snapshot(ctx context.Context) (demand.Snapshot, error)
}

// RunnerStatus is what the runner on one Droplet is doing.
type RunnerStatus struct {
	// Registered: the runner manager on the Droplet has contacted GitLab.
	Registered   bool
	RegisteredAt time.Time
	// Draining: the runner has been told to stop taking jobs.
	Draining          bool
	Running           int
	LastJobFinishedAt time.Time
	JobsDone          int
}

// Observation is what the runners reported.
type Observation struct {
	// Droplets are the runners by Droplet ID; a Droplet missing here has no
	// runner registered yet.
	Droplets map[int]RunnerStatus
	// Waiting are, by pool, jobs a pool's runner manager has accepted with no
	// slot to run them yet (docker+machine accepts first, then provisions).
	Waiting map[string][]policy.Job
}

// Runners is the runner side of the fleet: the emulator's switch in the
// simulator, SSH to the Droplet in the daemon.
type Runners interface {
	// Observe reports the runners of the Droplets.
	Observe(ctx context.Context, snap demand.Snapshot, droplets []cloud.Droplet) (Observation, error)
	// Drain tells the Droplet's runner to take no new jobs and reports how many
	// it is still running. It must be idempotent. It fails with ErrNoAddress
	// when it needs the Droplet's address and d has none.
	Drain(ctx context.Context, d cloud.Droplet) (running int, err error)
}

// ErrNoAddress: the Droplet, as last listed, has no address to reach its
// runner at (it was listed while "new"). The reconciler looks it up and
// drains it again.
var ErrNoAddress = errors.New("no address in the last listing")

// ErrUnreachable: the Droplet's runner has not answered for so long that
// waiting longer is pointless. It may still be taking jobs, so the reconciler
// does not delete the Droplet: it shuts it down gracefully (DigitalOcean's
// shutdown action, in which the runner finishes its jobs first) and deletes
// it once it is off.
var ErrUnreachable = errors.New("runner unreachable")

// Config tunes a Reconciler.
type Config struct {
	Pools   []config.Pool
	Billing config.BillingModel
	// RequestsPerMinute and RequestsPerHour are shoal's DigitalOcean budget.
	RequestsPerMinute, RequestsPerHour int
	// SSHKeys (IDs or fingerprints) go on every runner Droplet.
	SSHKeys []string
	// UserData returns the cloud-init for a new Droplet (nil: none).
	UserData func(pool config.Pool, name string) string
	// ShutdownLimit bounds how long a Droplet shut down gracefully, its
	// runner unreachable, may take to power off before it is deleted all the
	// same, loudly: a hung Droplet ignores the shutdown, and would be paid
	// for forever. Default 3 hours (GitLab's default job timeout is one).
	ShutdownLimit time.Duration
	// BlindLimit is how long GitLab's job queue may be unreadable (an
	// outage, a revoked or expired token) before the fleet is drained down
	// to each pool's min_instances: with no demand to go by, idle runners
	// would be paid for until someone noticed. Runners finish their jobs
	// first, and nothing is created until the queue can be read again.
	// Default an hour; negative: never.
	BlindLimit time.Duration
	// StuckNew, StuckOff and RegisterTimeout bound how long a Droplet may stay
	// "new", stay "off", or run without its runner registering before it is
	// reaped. Defaults 10, 10 and 15 minutes.
	StuckNew, StuckOff, RegisterTimeout time.Duration
	// ListEvery is how often the fleet is listed in full (default 2 minutes); in
	// between, a Step works from the last listing plus its own creates and
	// deletes, which saves most of the API budget on a large fleet.
	ListEvery time.Duration
	// Drains is how many drains run at once (default 10): a drain over SSH
	// to a Droplet that does not answer takes its whole timeout. The
	// simulator uses 1, so that a replay repeats exactly.
	Drains int
	// State is what the policy learned before (a daemon's saved state); the
	// zero State starts afresh.
	State policy.State
	// Shutdowns are the graceful shutdowns a Reconciler before this one
	// began (Reconciler.Shutdowns, saved): ShutdownLimit counts from them.
	Shutdowns map[int]Shutdown
	// Seed makes Droplet names reproducible (the simulator); zero picks one at random.
	Seed   uint64
	Logger *slog.Logger
}

// Reconciler applies a policy's decisions to the fleet.
type Reconciler struct {
	cloud   cloud.Cloud
	demand  Demand
	runners Runners
	policy  policy.Policy
	clock   clock.Clock
	cfg     Config
	log     *slog.Logger
	rng     *mrand.Rand
	budget  budget
	state   policy.State
	drained map[int]bool // Droplets whose runners this reconciler drained
	// drainFailed: the last drain of the Droplet's runner failed.
	drainFailed map[int]bool

	fleet    []cloud.Droplet   // as last listed, with this Reconciler's changes since
	listedAt time.Time         // zero until the first listing
	foreign  map[int]bool      // Droplets tagged shoal that shoal did not make, said once
	offSince map[int]time.Time // when a listing first showed each Droplet powered off
	shutAt   map[int]Shutdown  // graceful shutdowns asked for, of Droplets whose runners cannot be reached
	madeAt   map[int]time.Time // when this Reconciler made each Droplet, for the last unlistedFor
	// demandProblems are those of the last snapshot, logged when they appeared.
	demandProblems map[string]bool
	// unreadSince is when reading the job queue began to fail (zero while it
	// works), unreadLast when it last failed.
	unreadSince, unreadLast time.Time
}

// New returns a Reconciler.
func New(c cloud.Cloud, d Demand, r Runners, p policy.Policy, clk clock.Clock, cfg Config) *Reconciler {
	if cfg.BlindLimit == 0 {
		cfg.BlindLimit = time.Hour
	}
	if cfg.StuckNew == 0 {
		cfg.StuckNew = 10 * time.Minute
	}
	if cfg.StuckOff == 0 {
		cfg.StuckOff = 10 * time.Minute
	}
	if cfg.RegisterTimeout == 0 {
		cfg.RegisterTimeout = 15 * time.Minute
	}
	if cfg.ShutdownLimit == 0 {
		cfg.ShutdownLimit = 3 * time.Hour
	}
	if cfg.ListEvery == 0 {
		cfg.ListEvery = 2 * time.Minute
	}
	if cfg.Drains <= 0 {
		cfg.Drains = 10
	}
	if cfg.RequestsPerMinute == 0 {
		cfg.RequestsPerMinute = int(config.APIRequestsPerMinute * config.DefaultRateBudget)
	}
	if cfg.RequestsPerHour == 0 {
		cfg.RequestsPerHour = int(config.APIRequestsPerHour * config.DefaultRateBudget)
	}
	seed := cfg.Seed
	if seed == 0 {
		seed = mrand.Uint64()
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	shutAt := maps.Clone(cfg.Shutdowns)
	if shutAt == nil {
		shutAt = map[int]Shutdown{}
	}
	return &Reconciler{cloud: c, demand: d, runners: r, policy: p, clock: clk, cfg: cfg, log: log,
		rng:    mrand.New(mrand.NewPCG(seed, seed^0x5a0a1)),
		budget: budget{perMinute: cfg.RequestsPerMinute, perHour: cfg.RequestsPerHour}, drained: map[int]bool{}, drainFailed: map[int]bool{},
		shutAt: shutAt, madeAt: map[int]time.Time{}, state: cfg.State}
}

// State is what the policy has learned so far. Not safe to call during a Step.
func (r *Reconciler) State() policy.State { return r.state }

// Shutdowns are the graceful shutdowns of Droplets whose runners cannot be
// reached, by Droplet ID, for a Reconciler after this one (Config.Shutdowns).
// Not safe to call during a Step.
func (r *Reconciler) Shutdowns() map[int]Shutdown { return maps.Clone(r.shutAt) }

// Report says what one Step saw and did.
type Report struct {
	At        time.Time
	Droplets  int
	Pending   int
	Decisions []policy.Decision
	Created   []cloud.Droplet
	Drained   []int
	Deleted   []int
	// Deferred are actions left for a later Step to stay inside the rate budget.
	Deferred []string
	// Requests is how many DigitalOcean requests the Step made.
	Requests int
	// Problems are actions that failed; the next Step tries again.
	Problems []error
	// Blind: the job queue has been unreadable for BlindLimit, and the Step
	// drained the fleet down to min_instances (it fails all the same).
	Blind bool
	// ShuttingDown is how many Droplets are being shut down gracefully,
	// their runners unreachable; QueueProblems how many problems reading the
	// job queue there were (demand.Snapshot.Problems).
	ShuttingDown, QueueProblems int
}

// failed notes an action that failed: deferred when the rate budget stopped
// it, a problem otherwise. Either way the next Step tries again.
func (rep *Report) failed(action string, err error) {
	if errors.Is(err, cloud.ErrBudget) {
		rep.Deferred = append(rep.Deferred, action)
	} else {
		rep.Problems = append(rep.Problems, err)
	}
}

// Step reconciles once.
func (r *Reconciler) Step(ctx context.Context) (rep Report, err error) {
	now := r.clock.Now()
	rep.At = now
	startReqs := r.cloud.Requests()
	defer func() { rep.Requests = int(r.cloud.Requests() - startReqs) }()

	// What the budget has left: shoal's share, and no more than DigitalOcean's
	// headers say is left. A Step can take a while (retries wait), so both
	// are read, and each request booked, at the moment it is sent.
	left := func() int {
		t := r.clock.Now()
		return min(r.budget.available(t), r.reportedLeft(t))
	}
	// within lets a request go if it leaves reserve requests in the budget,
	// and books it.
	within := func(ctx context.Context, reserve int) context.Context {
		return cloud.WithBudget(ctx, func() bool {
			if left()-reserve < 1 {
				return false
			}
			r.budget.record(r.clock.Now(), 1)
			return true
		})
	}
	if r.listedAt.IsZero() || now.Sub(r.listedAt) >= r.cfg.ListEvery {
		listed, err := r.cloud.ListDroplets(within(ctx, 0), FleetTag)
		if err != nil {
			return rep, fmt.Errorf("list the fleet: %w", err)
		}
		r.fleet, r.listedAt = r.withUnlisted(now, r.owned(listed)), now
		r.noteOff(now)
	}
	droplets := slices.Clone(r.fleet)
	settings := make([]config.Settings, len(r.cfg.Pools))
	readsQueue := false
	for i, p := range r.cfg.Pools {
		settings[i] = p.Effective(now)
		readsQueue = readsQueue || r.policy.Acceptance(settings[i]).ReadsQueue
	}
	var snap demand.Snapshot
	// unread: the queue cannot be read; once it has been unreadable for
	// BlindLimit (rep.Blind), this Step drains the fleet down to
	// min_instances, and still fails with unread.
	var unread error
	if readsQueue { // GitLab Runner's autoscalers never look at the queue
		if snap, err = r.demand.Snapshot(ctx); err != nil {
			if rep.Blind, unread = r.unreadable(now, err); !rep.Blind {
				return rep, unread
			}
		} else {
			r.unreadSince = time.Time{}
			r.noteDemandProblems(snap.Problems)
			rep.QueueProblems = len(snap.Problems)
		}
	}
	var obs Observation
	if !rep.Blind { // blind, the runners' state is unknown: GitLab tells it
		if obs, err = r.runners.Observe(ctx, snap, droplets); err != nil {
			return rep, fmt.Errorf("observe runners: %w", err)
		}
	}
	status := obs.Droplets
	rep.Droplets, rep.Pending = len(droplets), len(snap.Pending)
	// What creates and deletes may spend now: the budget, less what this Step
	// has spent, less the listings the coming minute will need.
	listings := int((time.Minute + r.cfg.ListEvery - 1) / r.cfg.ListEvery)
	reserve := listings * (len(droplets)/200 + 1)
	avail := func() int { return left() - reserve }
	// Creates and deletes, with their retries and lookups, stay in the budget.
	spend := within(ctx, reserve)

	byID := map[int]cloud.Droplet{}
	byPool := map[string][]cloud.Droplet{}
	for _, d := range droplets {
		byID[d.ID] = d
	}
	// What is known of Droplets deleted by someone else goes with them.
	gone := func(id int) bool { _, ok := byID[id]; return !ok }
	maps.DeleteFunc(r.drained, func(id int, _ bool) bool { return gone(id) })
	maps.DeleteFunc(r.drainFailed, func(id int, _ bool) bool { return gone(id) })
	maps.DeleteFunc(r.shutAt, func(id int, _ Shutdown) bool { return gone(id) })
	// Droplets to retire, with why: reaped, or of a pool no longer
	// configured (not the policy's to decide), then the policy's deletes.
	var retiring []action
	for _, d := range droplets {
		pool := poolOf(d)
		why := r.stuck(now, d, status[d.ID], !rep.Blind)
		if _, ok := r.poolConfig(pool); !ok || why != "" {
			if why == "" {
				why = fmt.Sprintf("pool %q is no longer configured", pool)
			}
			retiring = append(retiring, action{d, why})
			continue
		}
		byPool[pool] = append(byPool[pool], d)
	}

	ps := policy.Snapshot{Now: now, Billing: r.cfg.Billing}
	for i, pool := range r.cfg.Pools {
		pp := policy.Pool{Settings: settings[i]}
		for _, j := range snap.Pending {
			if pool.Takes(j.Tags) {
				pp.Pending = append(pp.Pending, policy.Job{ID: j.ID, Tags: j.Tags, CreatedAt: j.CreatedAt, QueuedAt: j.QueuedAt})
			}
		}
		for _, j := range snap.Created {
			if pool.Takes(j.Tags) {
				pp.Upcoming = append(pp.Upcoming, policy.Job{ID: j.ID, Tags: j.Tags, CreatedAt: j.CreatedAt})
			}
		}
		for _, d := range byPool[pool.Name] {
			pd := toPolicy(d, status[d.ID])
			if r.shuttingDown(d.ID) {
				pd.State = policy.Draining // being shut down: no one's capacity
			}
			pp.Droplets = append(pp.Droplets, pd)
		}
		pp.Waiting = obs.Waiting[pool.Name]
		ps.Pools = append(ps.Pools, pp)
	}
	defer func() {
		for _, p := range rep.Problems {
			r.log.Warn("reconcile: an action failed; the next step retries it", "error", p)
		}
	}()
	var decisions []policy.Decision
	if rep.Blind {
		decisions = r.blindDecisions(ps)
	} else {
		decisions, r.state = r.policy.Decide(ps, r.state)
	}
	rep.Decisions = decisions

	// Drain first, all at once: the runners to stop, and those whose
	// Droplets go. Then delete the drained Droplets whose runners are idle
	// (that saves money), then create. Runners whose last drain failed are
	// drained after the creates: a drain over SSH to a Droplet that does not
	// answer takes its whole timeout, and new jobs must not wait behind it.
	var draining []action
	for _, dec := range decisions {
		if d, ok := byID[dec.DropletID]; ok {
			switch dec.Kind {
			case policy.Delete:
				retiring = append(retiring, action{d, dec.Reason})
			case policy.Drain:
				draining = append(draining, action{d, dec.Reason})
			}
		}
	}
	// A Droplet being shut down goes on until it is off, or its runner is
	// reached and drained, whatever the policy now says of it.
	for _, d := range droplets {
		if r.shuttingDown(d.ID) && !slices.ContainsFunc(retiring, func(a action) bool { return a.d.ID == d.ID }) {
			retiring = append(retiring, action{d, "being shut down: its runner cannot be reached over SSH"})
		}
	}
	// Those whose last drain failed, as of now (a drain below may fail).
	later := map[int]bool{}
	for _, a := range draining {
		later[a.d.ID] = r.drainFailed[a.d.ID]
	}
	var shutting []action
	for _, a := range retiring {
		// One being shut down for want of SSH is asked over SSH again only
		// when its shutdown is due to be asked again, after the creates: it
		// would hold the Step for a timeout. Once off, it is quiet.
		switch sd, ok := r.shutAt[a.d.ID]; {
		case quiet(a.d, status[a.d.ID]):
		case ok && now.Sub(sd.Last) < shutdownEvery:
			shutting = append(shutting, a)
		default:
			draining = append(draining, a)
			later[a.d.ID] = r.drainFailed[a.d.ID] || ok
		}
	}
	drainAndRetire := func(pass bool, shutting []action) {
		other := func(a action) bool { return later[a.d.ID] != pass }
		running, unreachable := r.drainAll(ctx, spend, &rep, slices.DeleteFunc(slices.Clone(draining), other))
		for _, a := range append(shutting, unreachable...) {
			r.shutdown(spend, &rep, a, status[a.d.ID], avail)
		}
		for _, a := range slices.DeleteFunc(slices.Clone(retiring), other) {
			r.retire(spend, &rep, a, status[a.d.ID], running, avail)
		}
	}
	drainAndRetire(false, shutting)
	for _, dec := range decisions {
		if dec.Kind == policy.Create {
			r.create(spend, &rep, dec, droplets, avail)
		}
	}
	if slices.ContainsFunc(draining, func(a action) bool { return later[a.d.ID] }) {
		drainAndRetire(true, nil)
	}
	for id := range r.shutAt {
		if !slices.Contains(rep.Deleted, id) {
			rep.ShuttingDown++
		}
	}
	return rep, unread
}

// unreadGap is the longest time between two failed reads of the job queue
// that counts as one outage: the clock starts again after a longer one
// (the Steps between failed before reading, or shoal was stopped), since
// nothing is known of the time between.
const unreadGap = 5 * time.Minute

// unreadable notes a failed read of the job queue and returns the Step's
// error, and whether the queue has been unreadable for BlindLimit.
func (r *Reconciler) unreadable(now time.Time, cause error) (blind bool, err error) {
	if r.unreadSince.IsZero() || now.Sub(r.unreadLast) > unreadGap {
		r.unreadSince = now
	}
	r.unreadLast = now
	since, at := r.unreadSince.UTC().Format(time.TimeOnly), r.unreadSince.Add(r.cfg.BlindLimit).UTC().Format(time.TimeOnly)
	switch {
	case r.cfg.BlindLimit < 0:
		return false, fmt.Errorf("read the job queue from GitLab (unreadable since %s UTC): %w", since, cause)
	case now.Sub(r.unreadSince) < r.cfg.BlindLimit:
		return false, fmt.Errorf("read the job queue from GitLab (unreadable since %s UTC; if it still is at %s, runners are drained down to min_instances): %w", since, at, cause)
	}
	return true, fmt.Errorf("read the job queue from GitLab (unreadable since %s UTC, for longer than unreadable_limit %s): runners are drained down to min_instances and nothing is created; fix shoal's access to GitLab (its URL, GITLAB_TOKEN) and it scales up again: %w",
		since, r.cfg.BlindLimit, cause)
}

// blindDecisions drain every pool down to min_instances, the queue being
// unreadable: the oldest Droplets not yet draining (nor being shut down) stay.
func (r *Reconciler) blindDecisions(ps policy.Snapshot) []policy.Decision {
	var out []policy.Decision
	for _, pp := range ps.Pools {
		ds := slices.Clone(pp.Droplets)
		slices.SortFunc(ds, func(a, b policy.Droplet) int {
			return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), cmp.Compare(a.ID, b.ID))
		})
		keep := pp.Settings.MinInstances
		for _, d := range ds {
			if keep > 0 && !r.drained[d.ID] && d.State != policy.Draining {
				keep--
				continue
			}
			out = append(out, policy.Decision{Kind: policy.Delete, Pool: pp.Settings.Pool, DropletID: d.ID,
				Reason: fmt.Sprintf("GitLab's job queue unreadable for over %s: down to min_instances", r.cfg.BlindLimit)})
		}
	}
	return out
}

// noteDemandProblems logs each problem reading the queue (a project GitLab
// refuses, a stale read) when it appears, not at every Step.
func (r *Reconciler) noteDemandProblems(problems []string) {
	now := make(map[string]bool, len(problems))
	for _, p := range problems {
		now[p] = true
		if !r.demandProblems[p] {
			r.log.Warn("cannot read part of the job queue; the rest is read, and the next Step tries again", "problem", p)
		}
	}
	r.demandProblems = now
}

// action is a Droplet to act on, and why.
type action struct {
	d   cloud.Droplet
	why string
}

// reportedLeft is what DigitalOcean's ratelimit-* headers say shoal may still
// spend this hour: the token's remaining requests, less the part of the limit
// that is not shoal's share (other clients may use the same token). It counts
// when shoal's own tally is wrong: after a restart, or with a shared token.
func (r *Reconciler) reportedLeft(now time.Time) int {
	rt := r.cloud.Rate()
	if rt.Limit == 0 || !now.Before(rt.Reset) {
		return math.MaxInt
	}
	return rt.Remaining - max(0, rt.Limit-r.cfg.RequestsPerHour)
}

// owned keeps the Droplets shoal made: tagged shoal-pool-<pool> and named
// shoal-<pool>-…. Anything else that carries the shoal tag (a user's own
// server, say) is left alone: it is logged once and never drained or deleted.
func (r *Reconciler) owned(ds []cloud.Droplet) []cloud.Droplet {
	return slices.DeleteFunc(ds, func(d cloud.Droplet) bool {
		pool := poolOf(d)
		if pool != "" && strings.HasPrefix(d.Name, "shoal-"+pool+"-") {
			return false
		}
		if !r.foreign[d.ID] {
			if r.foreign == nil {
				r.foreign = map[int]bool{}
			}
			r.foreign[d.ID] = true
			r.log.Warn("leaving alone a Droplet tagged shoal that shoal did not make (it needs a shoal-pool-<pool> tag and a shoal-<pool>- name to be managed); remove the shoal tag to silence this",
				"droplet", d.Name, "id", d.ID, "tags", d.Tags)
		}
		return true
	})
}

func poolOf(d cloud.Droplet) string {
	for _, t := range d.Tags {
		if p, ok := strings.CutPrefix(t, PoolTagPrefix); ok {
			return p
		}
	}
	return ""
}

func (r *Reconciler) poolConfig(name string) (config.Pool, bool) {
	for _, p := range r.cfg.Pools {
		if p.Name == name {
			return p, true
		}
	}
	return config.Pool{}, false
}

// stuck says why a Droplet should be reaped, or "" when it should not.
// Without GitLab (known false), whether a runner registered is unknown.
func (r *Reconciler) stuck(now time.Time, d cloud.Droplet, st RunnerStatus, known bool) string {
	age := now.Sub(d.Created)
	switch {
	case d.Status == "new" && age > r.cfg.StuckNew:
		return fmt.Sprintf("stuck in new for %s", age.Round(time.Second))
	case d.Status == "off" && now.Sub(r.offSince[d.ID]) > r.cfg.StuckOff && st.Running == 0:
		return fmt.Sprintf("powered off for %s, and billed all the same", now.Sub(r.offSince[d.ID]).Round(time.Second))
	case d.Status == "active" && known && !st.Registered && age > r.cfg.RegisterTimeout:
		return fmt.Sprintf("its runner never registered in %s: check the pool's image and user data", age.Round(time.Second))
	}
	return ""
}

// unlistedFor is how long a Droplet this Reconciler made is kept though a
// listing does not show it: listings are eventually consistent, and a
// Droplet dropped from the cache would be created again.
const unlistedFor = 2 * time.Minute

// withUnlisted adds to a fresh listing the Droplets this Reconciler made in
// the last unlistedFor (by its own clock) that it does not show yet.
func (r *Reconciler) withUnlisted(now time.Time, listed []cloud.Droplet) []cloud.Droplet {
	for id, at := range r.madeAt {
		if now.Sub(at) >= unlistedFor {
			delete(r.madeAt, id)
		}
	}
	for _, d := range r.fleet {
		if _, recent := r.madeAt[d.ID]; recent && !slices.ContainsFunc(listed, func(x cloud.Droplet) bool { return x.ID == d.ID }) {
			listed = append(listed, d)
		}
	}
	return listed
}

// relisted puts a Droplet just looked up in the cached fleet, in place of
// the listed one.
func (r *Reconciler) relisted(d cloud.Droplet) {
	if k := slices.IndexFunc(r.fleet, func(x cloud.Droplet) bool { return x.ID == d.ID }); k >= 0 {
		r.fleet[k] = d
	}
}

// forget drops a Droplet that is gone from the cached fleet.
func (r *Reconciler) forget(id int) {
	r.fleet = slices.DeleteFunc(r.fleet, func(x cloud.Droplet) bool { return x.ID == id })
}

// noteOff records when each Droplet was first listed powered off: it is
// reaped StuckOff after that, not after its creation (a Droplet that ran for
// an hour and was just switched off may be coming back).
func (r *Reconciler) noteOff(now time.Time) {
	off := make(map[int]time.Time)
	for _, d := range r.fleet {
		if d.Status != "off" {
			continue
		}
		since, ok := r.offSince[d.ID]
		if !ok {
			since = now
		}
		off[d.ID] = since
	}
	r.offSince = off
}

func toPolicy(d cloud.Droplet, st RunnerStatus) policy.Droplet {
	pd := policy.Droplet{ID: d.ID, Name: d.Name, CreatedAt: d.Created, ReadyAt: st.RegisteredAt,
		RunningJobs: st.Running, LastJobFinishedAt: st.LastJobFinishedAt, JobsDone: st.JobsDone}
	// The runner knows best: a registered runner means the Droplet is up, even
	// when the last listing, up to ListEvery old, still said "new".
	switch {
	case !st.Registered:
		pd.State = policy.Booting
	case st.Draining:
		pd.State = policy.Draining
	default:
		pd.State = policy.Ready
	}
	return pd
}

// drainAll drains the runners of these Droplets, up to cfg.Drains at a
// time, and returns the jobs each still runs, and the Droplets whose runners
// cannot be reached (ErrUnreachable); a Droplet whose drain failed is missing
// from the first. Cloud lookups go through spend.
func (r *Reconciler) drainAll(ctx, spend context.Context, rep *Report, as []action) (map[int]int, []action) {
	type result struct {
		running int
		err     error
	}
	seen := make(map[int]bool, len(as))
	as = slices.DeleteFunc(as, func(a action) bool {
		dup := seen[a.d.ID]
		seen[a.d.ID] = true
		return dup
	})
	results := make([]result, len(as))
	drain := func(which []int) {
		var g errgroup.Group
		g.SetLimit(r.cfg.Drains)
		for _, i := range which {
			g.Go(func() error {
				n, err := r.runners.Drain(ctx, as[i].d)
				results[i] = result{n, err}
				return nil
			})
		}
		_ = g.Wait()
	}
	all := make([]int, len(as))
	for i := range all {
		all[i] = i
	}
	drain(all)
	// A Droplet listed before it had an address is looked up, and drained again.
	var again []int
	for i, a := range as {
		if !errors.Is(results[i].err, ErrNoAddress) {
			continue
		}
		d, err := r.cloud.GetDroplet(spend, a.d.ID)
		if err != nil {
			results[i].err = fmt.Errorf("look up its address: %w", err)
			continue
		}
		r.relisted(d)
		as[i].d = d
		again = append(again, i)
	}
	drain(again)
	// In order, so that reports and logs do not depend on which drain
	// answered first.
	running := make(map[int]int, len(as))
	var unreachable []action
	for i, a := range as {
		switch res := results[i]; {
		case errors.Is(res.err, ErrUnreachable):
			unreachable = append(unreachable, a)
		case res.err != nil && r.shuttingDown(a.d.ID):
			unreachable = append(unreachable, a) // still: its shutdown is asked again
		case res.err != nil:
			r.drainFailed[a.d.ID] = true
			rep.failed("drain "+a.d.Name, fmt.Errorf("drain %s: %w", a.d.Name, res.err))
		default:
			delete(r.drainFailed, a.d.ID)
			delete(r.shutAt, a.d.ID) // reached again: drained the usual way
			running[a.d.ID] = res.running
			if !r.drained[a.d.ID] {
				r.drained[a.d.ID] = true
				rep.Drained = append(rep.Drained, a.d.ID)
				r.log.Info("draining runner", "droplet", a.d.Name, "running_jobs", res.running, "reason", a.why)
			}
		}
	}
	return running, unreachable
}

// quiet: nothing can run on the Droplet, so it goes without a drain: it is
// powered off, or still "new" with no runner seen. Any other may run a runner
// shoal cannot see (its pool was removed, or uses another runner now), with
// jobs: it is asked first.
func quiet(d cloud.Droplet, st RunnerStatus) bool {
	return d.Status == "off" || d.Status == "new" && !st.Registered
}

// shutdownEvery is how often a graceful shutdown is asked again of a
// Droplet still not off (DigitalOcean may have failed the action).
const shutdownEvery = 10 * time.Minute

// Shutdown is a graceful shutdown asked for: when first and last.
type Shutdown struct{ First, Last time.Time }

// shuttingDown: a graceful shutdown of the Droplet was asked for.
func (r *Reconciler) shuttingDown(id int) bool {
	_, ok := r.shutAt[id]
	return ok
}

// shutdown asks DigitalOcean to shut a Droplet down gracefully, its runner
// being unreachable: systemd stops gitlab-runner as a drain does (SIGQUIT,
// no timeout; the user data lifts poweroff.target's 30 minutes), so its jobs
// finish first. Once the Droplet is off, retire deletes it. It asks again
// every shutdownEvery, and deletes one still on ShutdownLimit after the first
// try, refused or not (Shutdowns keeps that date across restarts).
func (r *Reconciler) shutdown(ctx context.Context, rep *Report, a action, st RunnerStatus, avail func() int) {
	now := r.clock.Now()
	sd, asked := r.shutAt[a.d.ID]
	switch {
	case a.d.Status == "off":
		return // retire deletes it
	case asked && now.Sub(sd.First) >= r.cfg.ShutdownLimit:
		r.log.Error("a Droplet shut down gracefully has not powered off within the limit; deleting it anyway (a job still on it is lost). Its runner could not be reached over SSH either: it is most likely hung",
			"droplet", a.d.Name, "limit", r.cfg.ShutdownLimit, "running_jobs_in_gitlab", st.Running)
		r.delete(ctx, rep, a.d, fmt.Sprintf("not off %s after a graceful shutdown", r.cfg.ShutdownLimit), avail)
		return
	case asked && now.Sub(sd.Last) < shutdownEvery:
		return
	case avail() < 1:
		rep.Deferred = append(rep.Deferred, "shut down "+a.d.Name)
		return
	}
	_, err := r.cloud.StartDropletAction(ctx, a.d.ID, "shutdown")
	if errors.Is(err, cloud.ErrBudget) {
		rep.failed("shut down "+a.d.Name, err) // not sent: asked at the next Step
		return
	}
	if err != nil && !errors.Is(err, cloud.ErrPendingEvent) {
		rep.failed("shut down "+a.d.Name, err) // refused: the limit counts all the same
	}
	if !asked {
		sd.First = now
		r.log.Warn("cannot reach the runner over SSH to drain it; shutting its Droplet down gracefully instead (the runner finishes its jobs first), and deleting it once off. Check the firewall, ssh_keys and the runner host key if this recurs",
			"droplet", a.d.Name)
	}
	sd.Last = now
	r.shutAt[a.d.ID] = sd
}

// retire deletes a Droplet once its runner is drained and idle: running says
// what each drained runner still runs. A Droplet still running jobs, or whose
// drain failed, is left for a later Step. Never kill a job.
func (r *Reconciler) retire(ctx context.Context, rep *Report, a action, st RunnerStatus, running map[int]int, avail func() int) {
	n := 0
	if !quiet(a.d, st) {
		var ok bool
		if n, ok = running[a.d.ID]; !ok {
			return
		}
	} else if !r.listedAt.Equal(rep.At) {
		// Quiet as last listed, up to ListEvery ago: a Droplet powered on
		// since may run a job. Look before deleting it undrained.
		cur, err := r.cloud.GetDroplet(ctx, a.d.ID)
		switch {
		case errors.Is(err, cloud.ErrNotFound):
			r.forget(a.d.ID)
			return
		case err != nil:
			rep.failed("look up "+a.d.Name, err)
			return
		}
		r.relisted(cur)
		if !quiet(cur, st) {
			return // drained at the next Step
		}
	}
	if n > 0 || slices.Contains(rep.Deleted, a.d.ID) {
		return
	}
	r.delete(ctx, rep, a.d, a.why, avail)
}

func (r *Reconciler) delete(ctx context.Context, rep *Report, d cloud.Droplet, why string, avail func() int) {
	if avail() < 1 {
		rep.Deferred = append(rep.Deferred, "delete "+d.Name)
		return
	}
	if err := r.cloud.DeleteDroplet(ctx, d.ID); err != nil {
		rep.failed("delete "+d.Name, err)
		return
	}
	delete(r.drained, d.ID)
	r.forget(d.ID)
	rep.Deleted = append(rep.Deleted, d.ID)
	r.log.Info("deleted droplet", "droplet", d.Name, "reason", why)
}

func (r *Reconciler) create(ctx context.Context, rep *Report, dec policy.Decision, existing []cloud.Droplet, avail func() int) {
	pool, ok := r.poolConfig(dec.Pool)
	if !ok || dec.Count <= 0 {
		return
	}
	count := min(dec.Count, avail()*10) // ten per request
	if count < dec.Count {
		rep.Deferred = append(rep.Deferred, fmt.Sprintf("create %d in pool %s", dec.Count-count, dec.Pool))
	}
	if count <= 0 {
		return
	}
	names := r.names(pool.Name, count, existing)
	spec := cloud.DropletSpec{Region: pool.Region, Size: pool.Size, Image: pool.Image, SSHKeys: r.cfg.SSHKeys,
		Tags: []string{FleetTag, PoolTagPrefix + pool.Name}}
	if r.cfg.UserData != nil {
		// One request makes many Droplets with the same user data, so it cannot
		// carry a name; the runner reads its name from the metadata service.
		spec.UserData = r.cfg.UserData(pool, "")
	}
	made, err := r.cloud.CreateDroplets(ctx, spec, names)
	for _, d := range made {
		r.madeAt[d.ID] = r.clock.Now()
	}
	rep.Created = append(rep.Created, made...)
	r.fleet = append(r.fleet, made...)
	if err != nil {
		rep.failed(fmt.Sprintf("create %d in pool %s", count-len(made), dec.Pool), err)
		if cloud.MayHaveTakenEffect(err) {
			// The Droplets may exist though no answer said so (a 5xx, a lost
			// response, a timeout): list the fleet before the next decision
			// rather than trust the cache and create them again.
			r.listedAt = time.Time{}
		}
		if errors.Is(err, cloud.ErrRateLimited) {
			r.budget.block(r.clock.Now().Add(time.Minute)) // back off for a minute
		}
	}
	r.log.Info("created droplets", "pool", pool.Name, "count", len(made), "reason", dec.Reason)
}

// names returns count new names shoal-<pool>-<random>, unused in the fleet.
func (r *Reconciler) names(pool string, count int, existing []cloud.Droplet) []string {
	used := map[string]bool{}
	for _, d := range existing {
		used[d.Name] = true
	}
	out := make([]string, 0, count)
	for len(out) < count {
		n := fmt.Sprintf("shoal-%s-%08x", pool, r.rng.Uint32())
		if !used[n] {
			used[n] = true
			out = append(out, n)
		}
	}
	return out
}
