package reconcile_test

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shoalci/shoal/internal/clock"
	"github.com/shoalci/shoal/internal/cloud"
	"github.com/shoalci/shoal/internal/config"
	"github.com/shoalci/shoal/internal/doemu"
	"github.com/shoalci/shoal/internal/doemu/doemutest"
	"github.com/shoalci/shoal/internal/glemu"
	"github.com/shoalci/shoal/internal/policy"
	"github.com/shoalci/shoal/internal/reconcile"
	"github.com/shoalci/shoal/internal/sim"
)

const interval = 15 * time.Second

func dockerPool(capacity, maxInstances int) config.Pool {
	p := config.DefaultPool("docker")
	p.Tags = []string{"docker"}
	p.CapacityPerInstance = capacity
	p.MaxInstances = maxInstances
	return p
}

func world(t *testing.T, pol policy.Policy, o sim.WorldOptions) *sim.World {
	t.Helper()
	o.Policy = pol
	if o.Pools == nil {
		o.Pools = []config.Pool{dockerPool(1, 50)}
	}
	inner := o.WrapDO
	o.WrapDO = func(h http.Handler) http.Handler {
		if inner != nil {
			h = inner(h)
		}
		return doemutest.NewValidator(t, h)
	}
	w, err := sim.NewWorld(o)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func mustPolicy(t *testing.T, name string, p policy.Params) policy.Policy {
	t.Helper()
	pol, err := policy.ByName(name, p)
	if err != nil {
		t.Fatal(err)
	}
	return pol
}

// steps reconciles n times, interval apart, and returns the reports.
func steps(t *testing.T, w *sim.World, n int) []reconcile.Report {
	t.Helper()
	var reps []reconcile.Report
	for range n {
		rep, err := w.Reconciler.Step(context.Background())
		if err != nil {
			t.Fatalf("step at %s: %v", w.Clock.Since(sim.Epoch), err)
		}
		reps = append(reps, rep)
		w.Clock.Advance(interval)
	}
	return reps
}

func jobs(n int, d time.Duration) []glemu.StageSpec {
	st := glemu.StageSpec{}
	for range n {
		st.Jobs = append(st.Jobs, glemu.JobSpec{Duration: d, Tags: []string{"docker"}})
	}
	return []glemu.StageSpec{st}
}

func fleet(t *testing.T, w *sim.World) []cloud.Droplet {
	t.Helper()
	ds, err := w.Cloud.ListDroplets(context.Background(), reconcile.FleetTag)
	if err != nil {
		t.Fatal(err)
	}
	return ds
}

// assertNoJobKilled checks every job succeeded: a deleted Droplet never had one running.
func assertAllJobsSucceeded(t *testing.T, w *sim.World) {
	t.Helper()
	for _, j := range w.GL.Jobs() {
		if j.Status != glemu.StatusSuccess {
			t.Fatalf("job %d ended %s (%s)", j.ID, j.Status, j.FailureReason)
		}
	}
}

func TestScaleFromZeroToZero(t *testing.T) {
	for _, capacity := range []int{1, 4} {
		t.Run(fmt.Sprintf("capacity %d", capacity), func(t *testing.T) {
			w := world(t, mustPolicy(t, "shoal", nil), sim.WorldOptions{Pools: []config.Pool{dockerPool(capacity, 50)}})
			if _, err := w.GL.CreatePipeline(w.ProjectID, jobs(12, 5*time.Minute)); err != nil {
				t.Fatal(err)
			}
			reps := steps(t, w, 1)
			created := len(reps[0].Created)
			if want := (12 + capacity - 1) / capacity; created < want {
				t.Fatalf("first step created %d droplets for 12 pending jobs at %d per droplet, want at least %d", created, capacity, want)
			}
			steps(t, w, 4*60*60/15) // four hours
			assertAllJobsSucceeded(t, w)
			if left := fleet(t, w); len(left) != 0 {
				t.Fatalf("%d droplets left after the queue emptied (capacity %d): %+v", len(left), capacity, left)
			}
		})
	}
}

func TestAdoptsExistingFleet(t *testing.T) {
	w := world(t, mustPolicy(t, "shoal", nil), sim.WorldOptions{})
	// A previous autoscaler left three runner Droplets.
	spec := cloud.DropletSpec{Region: "nyc3", Size: "s-2vcpu-4gb", Image: "ubuntu-24-04-x64",
		Tags: []string{reconcile.FleetTag, reconcile.PoolTagPrefix + "docker"}}
	if _, err := w.Cloud.CreateDroplets(context.Background(), spec, []string{"shoal-docker-old1", "shoal-docker-old2", "shoal-docker-old3"}); err != nil {
		t.Fatal(err)
	}
	w.Clock.Advance(2 * time.Minute) // booted and registered
	if _, err := w.GL.CreatePipeline(w.ProjectID, jobs(3, time.Minute)); err != nil {
		t.Fatal(err)
	}
	reps := steps(t, w, 1)
	if len(reps[0].Created) != 0 {
		t.Fatalf("created %d droplets with three idle ones adopted", len(reps[0].Created))
	}
	steps(t, w, 60*60/15)
	assertAllJobsSucceeded(t, w)
	if left := fleet(t, w); len(left) != 0 {
		t.Fatalf("adopted droplets not released when idle: %d left", len(left))
	}
}

func TestLostCreateResponsesMakeNoDuplicates(t *testing.T) {
	// DigitalOcean's listings are eventually consistent: with a lag, the
	// lookup right after a lost response does not find the Droplets yet.
	for _, lag := range []time.Duration{0, 5 * time.Second} {
		t.Run(fmt.Sprintf("listing lag %s", lag), func(t *testing.T) {
			w := world(t, mustPolicy(t, "shoal", nil), sim.WorldOptions{Faults: doemu.Faults{LostCreateRate: 1, ListLag: lag}})
			if _, err := w.GL.CreatePipeline(w.ProjectID, jobs(8, time.Minute)); err != nil {
				t.Fatal(err)
			}
			reps := steps(t, w, 1)
			n := len(fleet(t, w))
			if n == 0 || n != len(reps[0].Created) || len(w.DO.Charges()) != n {
				t.Fatalf("%d droplets exist, %d reported created, %d ever billed: a lost response became a duplicate", n, len(reps[0].Created), len(w.DO.Charges()))
			}
		})
	}
}

// A periodic listing a moment after a create does not show the new Droplets
// yet (listings lag); the reconciler keeps them, and makes no second set.
func TestListingJustAfterACreateMakesNoDuplicates(t *testing.T) {
	w := world(t, mustPolicy(t, "shoal", policy.Params{"warm": 0}), sim.WorldOptions{Faults: doemu.Faults{ListLag: 5 * time.Second}})
	steps(t, w, 1) // lists at 0 s; the next listing is due at 2 min
	w.Clock.Advance(2*time.Minute - interval - 2*time.Second)
	if _, err := w.GL.CreatePipeline(w.ProjectID, jobs(3, 10*time.Minute)); err != nil {
		t.Fatal(err)
	}
	for range 2 { // creates from the cache at 1:58, then lists at 2:00
		if _, err := w.Reconciler.Step(context.Background()); err != nil {
			t.Fatal(err)
		}
		w.Clock.Advance(2 * time.Second)
	}
	if n := len(w.DO.Charges()); n != 3 {
		t.Fatalf("%d Droplets made for 3 pending jobs", n)
	}
}

func TestServerErrorAndRateLimitStorms(t *testing.T) {
	w := world(t, mustPolicy(t, "shoal", nil), sim.WorldOptions{Seed: 5, Faults: doemu.Faults{ErrorRate: 0.3},
		RateLimitPerMinute: 20})
	if _, err := w.GL.CreatePipeline(w.ProjectID, jobs(20, 3*time.Minute)); err != nil {
		t.Fatal(err)
	}
	var failed int
	for range 2 * 60 * 60 / 15 {
		if _, err := w.Reconciler.Step(context.Background()); err != nil {
			failed++ // a step that could not list the fleet does nothing; the next one tries again
		}
		w.Clock.Advance(interval)
	}
	assertAllJobsSucceeded(t, w)
	if left := fleet(t, w); len(left) != 0 {
		t.Fatalf("%d droplets left after the storm", len(left))
	}
	st := w.DO.Stats()
	if st.InjectedFaults == 0 {
		t.Fatal("no fault was injected")
	}
	t.Logf("%d requests, %d faults, %d rate limited, %d failed steps", st.Requests, st.InjectedFaults, st.RateLimited, failed)
}

func TestErroredCreatesAreReaped(t *testing.T) {
	w := world(t, mustPolicy(t, "shoal", nil), sim.WorldOptions{Faults: doemu.Faults{ActionErrorRate: 1}})
	if _, err := w.GL.CreatePipeline(w.ProjectID, jobs(2, time.Minute)); err != nil {
		t.Fatal(err)
	}
	steps(t, w, 1)
	stuck := fleet(t, w)
	if len(stuck) == 0 || stuck[0].Status != "new" {
		t.Fatalf("fleet after an errored create: %+v", stuck)
	}
	steps(t, w, 11*60/15) // past the 10-minute limit for "new"
	for _, d := range fleet(t, w) {
		if d.ID == stuck[0].ID {
			t.Fatalf("droplet %s stuck in new for 11 minutes was not reaped", d.Name)
		}
	}
}

func TestStaysInsideTheRateBudget(t *testing.T) {
	w := world(t, mustPolicy(t, "shoal", nil), sim.WorldOptions{Pools: []config.Pool{dockerPool(1, 100)},
		RequestsPerMinute: 10, RequestsPerHour: 1000})
	if _, err := w.GL.CreatePipeline(w.ProjectID, jobs(100, 30*time.Minute)); err != nil {
		t.Fatal(err)
	}
	reps := steps(t, w, 8) // two minutes
	perMinute := map[int]int{}
	deferred := 0
	for i, rep := range reps {
		perMinute[i*15/60] += rep.Requests
		deferred += len(rep.Deferred)
	}
	for m, n := range perMinute {
		if n > 10 {
			t.Fatalf("minute %d: %d requests for a budget of 10", m, n)
		}
	}
	if made := len(fleet(t, w)); made > 2*(10-4)*10 {
		t.Fatalf("%d droplets made in two minutes: more than a budget of 10 a minute (4 of them lists) allows", made)
	}
	if deferred == 0 {
		t.Fatal("nothing was deferred although the budget could not cover the scale-out")
	}
	if w.DO.Stats().RateLimited != 0 {
		t.Fatal("got 429s inside the budget")
	}
}

// A Step whose requests take a while books each one when it is sent, not
// all at the Step's start: otherwise they leave shoal's window a minute after
// the Step began while DigitalOcean still counts them, and a budget equal to
// DigitalOcean's limit runs into 429s.
func TestSlowRequestsAreBookedWhenSent(t *testing.T) {
	var clk *clock.Virtual
	slowed := false
	w := world(t, mustPolicy(t, "shoal", nil), sim.WorldOptions{Pools: []config.Pool{dockerPool(1, 300)},
		RequestsPerMinute: 10, RateLimitPerMinute: 10, RequestsPerHour: 1000,
		WrapDO: func(h http.Handler) http.Handler {
			return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
				h.ServeHTTP(rw, r)
				if !slowed { // the first answer, the fleet's listing, takes 50 s
					slowed = true
					clk.Advance(50 * time.Second)
				}
			})
		}})
	clk = w.Clock
	if _, err := w.GL.CreatePipeline(w.ProjectID, jobs(200, 30*time.Minute)); err != nil {
		t.Fatal(err)
	}
	steps(t, w, 8)
	if n := w.DO.Stats().RateLimited; n != 0 {
		t.Fatalf("%d 429s with a budget equal to DigitalOcean's limit", n)
	}
	if made := len(fleet(t, w)); made < 100 {
		t.Fatalf("%d made in two minutes, want the budget spent", made)
	}
}

func TestThousandDropletFleet(t *testing.T) {
	w := world(t, mustPolicy(t, "static", policy.Params{"instances": 1000}),
		sim.WorldOptions{Pools: []config.Pool{dockerPool(1, 1000)}})
	reps := steps(t, w, 3)
	creates := 0
	for _, rep := range reps {
		creates += rep.Requests
		// One listing, then ten Droplets per create request: 100 Droplets in at most 10 requests.
		if maxReqs := 1 + (len(rep.Created)+9)/10; rep.Requests > maxReqs {
			t.Fatalf("a step created %d droplets with %d requests, want at most %d", len(rep.Created), rep.Requests, maxReqs)
		}
	}
	if n := len(fleet(t, w)); n != 1000 {
		t.Fatalf("static 1000 made %d droplets", n)
	}
	steps(t, w, 8) // booted and registered
	rep := steps(t, w, 1)[0]
	if rep.Requests > 6 || len(rep.Decisions) != 0 {
		t.Fatalf("steady state at 1,000 droplets: %d requests, decisions %v", rep.Requests, rep.Decisions)
	}
	t.Logf("scale-out to 1,000: %d requests over 3 steps; steady state: %d requests", creates, rep.Requests)
}

func TestHonoursDigitalOceansRateHeaders(t *testing.T) {
	// The token allows 8 requests an hour: far below shoal's own budget, which
	// alone would spend 10 create requests on this queue and run into 429s.
	w := world(t, mustPolicy(t, "shoal", nil), sim.WorldOptions{Pools: []config.Pool{dockerPool(1, 100)},
		RateLimitPerHour: 8})
	if _, err := w.GL.CreatePipeline(w.ProjectID, jobs(100, 30*time.Minute)); err != nil {
		t.Fatal(err)
	}
	reps := steps(t, w, 7) // under two minutes: one listing
	deferred := 0
	for _, rep := range reps {
		deferred += len(rep.Deferred)
	}
	if st := w.DO.Stats(); st.RateLimited != 0 {
		t.Fatalf("%d responses were 429 although the headers said how many were left", st.RateLimited)
	}
	if made := len(fleet(t, w)); made == 0 || made > 60 || deferred == 0 {
		t.Fatalf("%d droplets made, %d actions deferred: want at most 6 create requests (one listing kept back) and the rest deferred", made, deferred)
	}
}

// shoal boots a Droplet in the large pool while a pipeline's docker tests run,
// for the docker;large build that follows: GitLab lists it as created.
func TestBootsForTheNextStage(t *testing.T) {
	large := config.DefaultPool("large")
	large.Tags = []string{"docker", "large"}
	large.MaxInstances = 10
	w := world(t, mustPolicy(t, "shoal", policy.Params{"warm": 0}), sim.WorldOptions{Pools: []config.Pool{dockerPool(1, 10), large}})
	if _, err := w.GL.CreatePipeline(w.ProjectID, []glemu.StageSpec{
		{Name: "test", Jobs: []glemu.JobSpec{{Duration: 10 * time.Minute, Tags: []string{"docker"}}, {Duration: 10 * time.Minute, Tags: []string{"docker"}}}},
		{Name: "build", Jobs: []glemu.JobSpec{{Duration: time.Minute, Tags: []string{"docker", "large"}}}},
	}); err != nil {
		t.Fatal(err)
	}
	steps(t, w, 1)
	pools := map[string]int{}
	for _, d := range fleet(t, w) {
		for _, tag := range d.Tags {
			if p, ok := strings.CutPrefix(tag, reconcile.PoolTagPrefix); ok {
				pools[p]++
			}
		}
	}
	if pools["docker"] != 2 || pools["large"] != 1 {
		t.Fatalf("first step made %v, want 2 docker Droplets for the tests and 1 large for the build", pools)
	}
	// The build starts on it without a cold start, and the fleet empties.
	steps(t, w, 60*60/15)
	assertAllJobsSucceeded(t, w)
	for _, j := range w.GL.Jobs() {
		if j.Stage == 1 && j.Wait() > 5*time.Second {
			t.Errorf("the build waited %s, want a runner ready for it", j.Wait())
		}
	}
	if left := fleet(t, w); len(left) != 0 {
		t.Fatalf("%d Droplets left an hour later", len(left))
	}
}

// DigitalOcean answers every create with a 500, and on the cloud layer's last
// attempt makes the Droplets all the same: the next Step must find them, not
// create them again.
func TestLostCreateOnTheLastAttemptMakesNoDuplicates(t *testing.T) {
	posts := 0
	w := world(t, mustPolicy(t, "shoal", policy.Params{"warm": 0}), sim.WorldOptions{WrapDO: func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPost && r.URL.Path == "/v2/droplets" {
				// The cloud layer tries a create 6 times (5 retries by default).
				if posts++; posts <= 6 {
					if posts == 6 {
						h.ServeHTTP(httptest.NewRecorder(), r) // made; the answer is lost
					}
					rw.Header().Set("Content-Type", "application/json")
					rw.WriteHeader(http.StatusInternalServerError)
					_, _ = rw.Write([]byte(`{"id":"server_error","message":"Server was unable to give you a response."}`))
					return
				}
			}
			h.ServeHTTP(rw, r)
		})
	}})
	if _, err := w.GL.CreatePipeline(w.ProjectID, jobs(3, 10*time.Minute)); err != nil {
		t.Fatal(err)
	}
	steps(t, w, 2)
	if n := len(fleet(t, w)); n != 3 {
		t.Fatalf("%d Droplets for 3 pending jobs: the create whose answer was lost was repeated", n)
	}
}

// Droplets a user tagged shoal are not shoal's: never drained, never deleted.
func TestLeavesForeignDropletsAlone(t *testing.T) {
	w := world(t, mustPolicy(t, "shoal", nil), sim.WorldOptions{})
	for _, d := range []struct {
		name string
		tags []string
	}{
		{"gitlab-server", []string{reconcile.FleetTag}},
		{"db-1", []string{reconcile.FleetTag, reconcile.PoolTagPrefix + "docker"}},
	} {
		spec := cloud.DropletSpec{Region: "nyc3", Size: "s-2vcpu-4gb", Image: "ubuntu-24-04-x64", Tags: d.tags}
		if _, err := w.Cloud.CreateDroplets(context.Background(), spec, []string{d.name}); err != nil {
			t.Fatal(err)
		}
	}
	for _, rep := range steps(t, w, 2*60*60/15) { // two hours: long past any reaping
		if len(rep.Deleted)+len(rep.Drained) > 0 {
			t.Fatalf("at %s: deleted %v, drained %v", rep.At.Sub(sim.Epoch), rep.Deleted, rep.Drained)
		}
	}
	if n := len(fleet(t, w)); n != 2 {
		t.Fatalf("%d of the 2 foreign Droplets left", n)
	}
}

// Retries after 5xx answers and the lookups after a failed create count
// against the budget too: no minute goes over it.
func TestBudgetHoldsThroughRetries(t *testing.T) {
	const perMinute = 10
	for seed := uint64(1); seed <= 5; seed++ {
		// Each request is dated as it reaches DigitalOcean: a Step that waits
		// between retries spans more than its start.
		var clk *clock.Virtual
		var mu sync.Mutex
		var sent []time.Time
		record := func(h http.Handler) http.Handler {
			return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
				mu.Lock()
				sent = append(sent, clk.Now())
				mu.Unlock()
				h.ServeHTTP(rw, r)
			})
		}
		w := world(t, mustPolicy(t, "shoal", nil), sim.WorldOptions{Seed: seed, Pools: []config.Pool{dockerPool(1, 100)},
			RequestsPerMinute: perMinute, RequestsPerHour: 1000, Faults: doemu.Faults{ErrorRate: 0.4}, WrapDO: record})
		clk = w.Clock
		if _, err := w.GL.CreatePipeline(w.ProjectID, jobs(100, 30*time.Minute)); err != nil {
			t.Fatal(err)
		}
		for range 16 {
			at := w.Clock.Now()
			if _, err := w.Reconciler.Step(context.Background()); err != nil {
				t.Logf("seed %d: step at %s: %v", seed, at.Sub(sim.Epoch), err) // a listing may fail under 40 % errors
			}
			w.Clock.Advance(interval)
		}
		if len(sent) == 0 {
			t.Fatal("no request was made")
		}
		for i := range sent {
			n := 0
			for j := i; j < len(sent) && sent[j].Sub(sent[i]) < time.Minute; j++ {
				n++
			}
			if n > perMinute {
				t.Fatalf("seed %d: %d requests in the minute from %s, budget %d", seed, n, sent[i].Sub(sim.Epoch), perMinute)
			}
		}
	}
}

// An untagged job counts only for a pool whose runners take untagged jobs, as
// in GitLab: no Droplet is made for a job its runner would never take.
func TestUntaggedJobs(t *testing.T) {
	for _, runUntagged := range []bool{false, true} {
		t.Run(fmt.Sprintf("run_untagged %v", runUntagged), func(t *testing.T) {
			pool := dockerPool(1, 10)
			pool.RunUntagged = runUntagged
			w := world(t, mustPolicy(t, "shoal", policy.Params{"warm": 0}), sim.WorldOptions{Pools: []config.Pool{pool}})
			if _, err := w.GL.CreatePipeline(w.ProjectID, []glemu.StageSpec{{Jobs: []glemu.JobSpec{{Duration: time.Minute}}}}); err != nil {
				t.Fatal(err)
			}
			steps(t, w, 30*60/15)
			done := w.GL.Counts().Success
			switch {
			case runUntagged && done != 1:
				t.Fatalf("the untagged job did not run on a pool with run_untagged")
			case !runUntagged && (done != 0 || len(w.DO.Charges()) != 0):
				t.Fatalf("%d Droplets made and %d jobs run for an untagged job no runner of the pool may take", len(w.DO.Charges()), done)
			}
		})
	}
}

// A Droplet that ran for an hour and was just powered off is reaped
// StuckOff (10 minutes) after it was first seen off, not at once.
func TestPoweredOffDropletsAreReapedAfterStuckOff(t *testing.T) {
	pool := dockerPool(1, 10)
	pool.MinInstances = 1
	w := world(t, mustPolicy(t, "shoal", nil), sim.WorldOptions{Pools: []config.Pool{pool}})
	steps(t, w, 60*60/15)
	ds := fleet(t, w)
	if len(ds) != 1 {
		t.Fatalf("%d Droplets, want the 1 of min_instances", len(ds))
	}
	if _, err := w.Cloud.DropletAction(context.Background(), ds[0].ID, "power_off"); err != nil {
		t.Fatal(err)
	}
	exists := func() bool {
		for _, d := range fleet(t, w) {
			if d.ID == ds[0].ID {
				return true
			}
		}
		return false
	}
	steps(t, w, 5*60/15)
	if !exists() {
		t.Fatal("reaped within 5 minutes of powering off")
	}
	steps(t, w, 10*60/15)
	if exists() {
		t.Fatal("still there 15 minutes after powering off")
	}
}

// A Droplet powered back on just before it would be reaped as off is not
// deleted undrained on the strength of a listing that still says "off": the
// reconciler looks first, whichever moment within a listing's life it comes
// back.
func TestDropletPoweredBackOnIsNotReapedFromAStaleListing(t *testing.T) {
	for wait := 9 * time.Minute; wait <= 11*time.Minute; wait += 15 * time.Second {
		pool := dockerPool(1, 10)
		pool.MinInstances = 1
		w := world(t, mustPolicy(t, "shoal", nil), sim.WorldOptions{Pools: []config.Pool{pool}})
		steps(t, w, 10*60/15)
		ds := fleet(t, w)
		if len(ds) != 1 {
			t.Fatalf("%d Droplets, want the 1 of min_instances", len(ds))
		}
		ctx := context.Background()
		if _, err := w.Cloud.DropletAction(ctx, ds[0].ID, "power_off"); err != nil {
			t.Fatal(err)
		}
		steps(t, w, int(wait/interval))
		if _, err := w.Cloud.DropletAction(ctx, ds[0].ID, "power_on"); err != nil {
			if errors.Is(err, cloud.ErrNotFound) {
				continue // reaped while off: right
			}
			t.Fatal(err)
		}
		drained := false
		for _, rep := range steps(t, w, 3*60/15) {
			drained = drained || slices.Contains(rep.Drained, ds[0].ID)
			if slices.Contains(rep.Deleted, ds[0].ID) && !drained {
				t.Errorf("powered on %s after powering off: deleted at %s, active again, without a drain", wait, rep.At.Sub(sim.Epoch))
			}
		}
	}
}

// raceToDelete is shoal's policy, except that while it decides to delete an
// idle Droplet it lets a job arrive and a runner take it: the race between a
// snapshot and the delete it leads to.
type raceToDelete struct {
	policy.Policy
	w     *sim.World
	armed bool
	hit   int // the Droplet whose delete raced a job
}

func (p *raceToDelete) Decide(s policy.Snapshot, st policy.State) ([]policy.Decision, policy.State) {
	ds, st := p.Policy.Decide(s, st)
	for _, d := range ds {
		if d.Kind != policy.Delete || !p.armed {
			continue
		}
		p.armed, p.hit = false, d.DropletID
		if _, err := p.w.GL.CreatePipeline(p.w.ProjectID, jobs(1, time.Minute)); err != nil {
			panic(err)
		}
		p.w.Clock.Advance(5 * time.Second) // the idle runner polls and takes it
	}
	return ds, st
}

// An idle Droplet is released by a delete decision, and the reconciler drains
// its runner before deleting: a job its runner took since the snapshot runs
// to the end, and the Droplet goes after it.
func TestDeleteOfAnIdleDropletNeverKillsAJobThatJustStarted(t *testing.T) {
	pol := &raceToDelete{Policy: mustPolicy(t, "shoal", policy.Params{"warm": 0})}
	w := world(t, pol, sim.WorldOptions{Pools: []config.Pool{dockerPool(1, 5)}})
	pol.w = w
	if _, err := w.GL.CreatePipeline(w.ProjectID, jobs(1, time.Minute)); err != nil {
		t.Fatal(err)
	}
	steps(t, w, 16) // booted, ran its job, now idle
	pol.armed = true
	var raced reconcile.Report
	for i := 0; i < 40 && pol.hit == 0; i++ {
		raced = steps(t, w, 1)[0]
	}
	if pol.hit == 0 {
		t.Fatal("the idle Droplet was never released")
	}
	if slices.Contains(raced.Deleted, pol.hit) || !slices.Contains(raced.Drained, pol.hit) {
		t.Fatalf("Droplet %d had just taken a job: want it drained, not deleted; report %+v", pol.hit, raced)
	}
	steps(t, w, 20)
	assertAllJobsSucceeded(t, w)
	if left := fleet(t, w); len(left) != 0 {
		t.Fatalf("%d droplets left after the raced job ended", len(left))
	}
}

// With GitLab's job queue unreadable for BlindLimit (an hour by default), a
// Step drains each pool down to min_instances, keeping its oldest Droplets,
// and creates nothing; the runners finish their jobs first. Before that,
// nothing changes. A failure after a gap in the failures (Steps that failed
// before reading, shoal stopped) starts the hour again. A read that works
// ends it all.
func TestUnreadableQueueDrainsDownToMinInstances(t *testing.T) {
	var down atomic.Bool
	pool := dockerPool(1, 50)
	pool.MinInstances = 1
	w := world(t, mustPolicy(t, "shoal", nil), sim.WorldOptions{Pools: []config.Pool{pool},
		WrapGL: func(h http.Handler) http.Handler {
			return http.HandlerFunc(func(rw http.ResponseWriter, req *http.Request) {
				if down.Load() {
					http.Error(rw, `{"message":"401 Unauthorized"}`, http.StatusUnauthorized)
					return
				}
				h.ServeHTTP(rw, req)
			})
		}})
	// Two Droplets, then two more a minute later, all running 3-hour jobs.
	for range 2 {
		if _, err := w.GL.CreatePipeline(w.ProjectID, jobs(2, 3*time.Hour)); err != nil {
			t.Fatal(err)
		}
		steps(t, w, 4)
	}
	steps(t, w, 8)
	ds := fleet(t, w)
	running := 0
	for _, j := range w.GL.Jobs() {
		if j.Status == glemu.StatusRunning {
			running++
		}
	}
	if len(ds) != 4 || running != 4 {
		t.Fatalf("%d Droplets running %d jobs, want 4 and 4", len(ds), running)
	}
	oldest := slices.MinFunc(ds, func(a, b cloud.Droplet) int { return cmp.Or(a.Created.Compare(b.Created), cmp.Compare(a.ID, b.ID)) })

	down.Store(true)
	if _, err := w.Reconciler.Step(context.Background()); err == nil {
		t.Fatal("a Step with GitLab refusing the token succeeded")
	}
	w.Clock.Advance(30 * time.Minute) // no Step gets as far as reading
	restart := w.Clock.Now()
	var blindAt time.Time
	for w.Clock.Since(restart) < 2*time.Hour+30*time.Minute {
		rep, err := w.Reconciler.Step(context.Background())
		switch {
		case err == nil:
			t.Fatalf("a Step %s into the outage succeeded", w.Clock.Since(restart))
		case len(rep.Created) > 0:
			t.Fatalf("created %d Droplets %s into the outage", len(rep.Created), w.Clock.Since(restart))
		case !rep.Blind && len(rep.Drained)+len(rep.Deleted) > 0:
			t.Fatalf("drained %v and deleted %v %s into the outage, before the limit", rep.Drained, rep.Deleted, w.Clock.Since(restart))
		case !rep.Blind && !strings.Contains(err.Error(), "if it still is at "+restart.Add(time.Hour).UTC().Format(time.TimeOnly)):
			t.Fatalf("before the limit the Step failed with %q; want it to say when the drain begins, an hour after the gap", err)
		case rep.Blind && blindAt.IsZero():
			blindAt = w.Clock.Now()
			if !strings.Contains(err.Error(), "drained down to min_instances") {
				t.Errorf("the first blind Step failed with %q; want it to say what it does", err)
			}
		}
		w.Clock.Advance(interval)
	}
	if late := blindAt.Sub(restart); blindAt.IsZero() || late < time.Hour || late > time.Hour+interval {
		t.Fatalf("drained down %s after the failures began again, want an hour", late)
	}
	assertAllJobsSucceeded(t, w)
	if left := fleet(t, w); len(left) != 1 || left[0].ID != oldest.ID {
		t.Errorf("left %d Droplets (%v), want the oldest alone (%d)", len(left), left, oldest.ID)
	}

	down.Store(false)
	if rep, err := w.Reconciler.Step(context.Background()); err != nil || rep.Blind {
		t.Errorf("with GitLab back: %v, blind %v", err, rep.Blind)
	}
}
