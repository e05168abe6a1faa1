package policy

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/shoalci/shoal/internal/config"
)

// shoal's own policy.
//
// Scale-out is driven by the queue: every pending job needs a slot, and slots
// already booting count, so a 30-job burst asks for all its Droplets at once
// and a reconcile a few seconds later asks for none again. On top of that it
// keeps a few warm slots: the jobs expected to arrive while a new Droplet
// boots, from an exponentially decayed arrival rate and a learned time-of-day
// profile (both kept in State), and slots for the stages to come: the jobs
// GitLab lists as created while their pipeline's earlier stages run, beyond
// what the running jobs will give back. Scale-in releases idle capacity as the billing
// model makes it worthwhile: per-second, once a Droplet has been idle about as
// long as a boot costs (the ski-rental rule: waiting longer than the cost of
// rebuying is never better than 2× optimal); hourly, only in the last minutes
// of an hour already paid for. It drains the least loaded Droplets first so
// that whole Droplets free up, and it reaches zero for any capacity_per_instance.

const (
	profileBuckets = 24 * 60 // one per minute of the day, UTC
	defaultBoot    = 90 * time.Second
)

var shoalEntry = Entry{
	Name: "shoal",
	Doc:  "queue-driven: slots for every pending job, warm slots from the arrival rate and time of day, billing-aware release",
	Params: append([]ParamDoc{
		{"warm", "factor on the jobs expected (from the recent rate) in the next boot time plus a minute, kept as warm slots (0: none)", 0},
		{"rate_window", "seconds: time constant of the arrival-rate average", 1},
		{"profile_weight", "weight of the latest day in the time-of-day profile (0: no profile)", 0},
		{"linger", "per-second billing: seconds an idle Droplet stays (0: the observed boot time)", 0},
		{"profile_min", "jobs the profile expects in one minute that make a spike worth pre-warming for (default 6: more than an ordinary pipeline brings, so everyday noise pre-warms nothing)", 0},
		{"upcoming_window", "seconds: a created job (a stage to come) younger than this counts as demand for its pool, beyond what its running jobs give back (0: none)", 0},
		{"linger_cover", "per-second billing: beyond one Droplet, idle slots linger only up to this factor times the jobs expected (recent rate or time of day) over the linger and a boot; the rest go at once (0: no limit)", 0},
		{"hour_margin", "hourly billing: release an idle Droplet this many seconds before its paid hour ends", 1},
	}, settingParams...),
	Grid: func() []Params {
		return grid([]string{"warm"}, [][]float64{{0, 0.25, 1, 2}}) // the default, 0.5, is the first run
	},
	new: func(p Params) Policy { return &Shoal{params: p} },
}

// Shoal is shoal's own policy.
type Shoal struct {
	params Params
}

var _ Policy = (*Shoal)(nil)

// NewShoal returns shoal's policy with its default parameters.
func NewShoal() *Shoal { return &Shoal{params: Params{}} }

func (p *Shoal) Name() string   { return "shoal" }
func (p *Shoal) Params() Params { return p.params }

// Acceptance: shoal's runners take a job only when a slot is free (runner
// concurrency = capacity_per_instance on each Droplet); capacity is created
// ahead of jobs, not inside them. It decides every reconcile_interval and at
// once when a Job Hook reports a pending job.
func (p *Shoal) Acceptance(s config.Settings) Acceptance {
	s = p.params.overrideSettings(s)
	return Acceptance{Mode: AcceptOnFreeSlot, SlotsPerDroplet: s.CapacityPerInstance, Limit: s.MaxInstances * s.CapacityPerInstance, DecideOnJobHook: true, ReadsQueue: true}
}

// shoalPool is what shoal remembers about one pool.
type shoalPool struct {
	at         time.Time      // when the state was last updated
	pendingIDs map[int64]bool // the pending jobs at the last look (never modified: replaced)
	rate       float64        // arrivals per second, exponentially decayed
	// foreseen counts the arrivals of a spike the profile foresaw, less the
	// idle slots released since, whichever way; it lapses an hour (the longest
	// CI job) after the last of them. When the spike's jobs end, that many
	// idle slots go without lingering if the profile expects nothing more
	// soon: the rate ignores the spike, and the profile says it is over.
	foreseen      float64
	foreseenUntil time.Time
	jobs          map[int]int // running + done per Droplet at the last look (never modified: replaced)
	boot          time.Duration
	// day is the time-of-day profile. It is shared with the State it was
	// copied from until learn changes it (it changes at most once a minute
	// and on arrivals; the state is copied on every Decide). folded marks the
	// minute up to which its counts have been folded in.
	day    *dayProfile
	folded time.Time
	// restored: read back from a saved State; the time since at went unseen.
	restored bool
}

// ShoalPoolState is a read-only view of what shoal has learned about a pool.
type ShoalPoolState struct {
	// ArrivalsPerMinute is the decayed arrival rate.
	ArrivalsPerMinute float64
	// Boot is the observed boot time (create to runner ready).
	Boot time.Duration
	// ProfileAt returns the learned expected arrivals in the minute of day of t.
	ProfileAt func(t time.Time) float64
}

// ShoalPool returns what shoal's policy has learned about pool, if anything.
func (s State) ShoalPool(pool string) (ShoalPoolState, bool) {
	sp, ok := s.shoal[pool]
	if !ok {
		return ShoalPoolState{}, false
	}
	cp := *sp
	return ShoalPoolState{ArrivalsPerMinute: cp.rate * 60, Boot: cp.boot,
		ProfileAt: func(t time.Time) float64 { return cp.expected(minuteOfDay(t)) }}, true
}

// dayProfile: profile[m] is a day-to-day exponential average of counts[m],
// the arrivals in minute m of the day (UTC); weight[m] is the same average of
// 1, so profile/weight is the expected arrivals with the average's start from
// zero corrected: one day seen counts in full, and a nightly batch is
// pre-warmed whole from its second night.
type dayProfile struct {
	profile, weight, counts [profileBuckets]float64
}

// expected is the arrivals the profile expects in minute b of the day.
func (st *shoalPool) expected(b int) float64 {
	if st.day == nil || st.day.weight[b] == 0 {
		return 0
	}
	return st.day.profile[b] / st.day.weight[b]
}

// spikeAt is how far minute b of the day rises above both the five minutes
// before it and the five after it (the mean of each): a spike such as a
// nightly batch, not a busy stretch nor the step into or out of one, which
// the rate follows.
func (st *shoalPool) spikeAt(b int) float64 {
	const side = 5
	before, after := 0.0, 0.0
	for k := 1; k <= side; k++ {
		after += st.expected((b + k) % profileBuckets)
		before += st.expected((b - k + profileBuckets) % profileBuckets)
	}
	return st.expected(b) - max(before, after)/side
}

// expectedWithin is the arrivals the profile still expects from now until d
// later: the rest of this minute and the minutes that begin before then.
func (st *shoalPool) expectedWithin(now time.Time, d time.Duration) float64 {
	b := minuteOfDay(now)
	sum := max(st.expected(b)-st.counted(b), 0)
	for m := now.Truncate(time.Minute).Add(time.Minute); m.Before(now.Add(d)); m = m.Add(time.Minute) {
		sum += st.expected(minuteOfDay(m))
	}
	return sum
}

// counted is the arrivals counted so far in minute b of the day, not yet folded in.
func (st *shoalPool) counted(b int) float64 {
	if st.day == nil {
		return 0
	}
	return st.day.counts[b]
}

func minuteOfDay(t time.Time) int {
	t = t.UTC()
	return t.Hour()*60 + t.Minute()
}

// Decide implements Policy.
func (p *Shoal) Decide(s Snapshot, prev State) ([]Decision, State) {
	next := State{shoal: make(map[string]*shoalPool, len(s.Pools))}
	owner := assignJobs(s.Pools, func(p *Pool) []Job { return p.Pending })
	upOwner := assignJobs(s.Pools, func(p *Pool) []Job { return p.Upcoming })
	var out []Decision
	for i := range s.Pools {
		pool := &s.Pools[i]
		name := pool.Settings.Pool
		st := &shoalPool{}
		if old, ok := prev.shoal[name]; ok {
			*st = *old // copy: the caller's State stays untouched
		}
		next.shoal[name] = st
		out = p.decidePool(s.Now, s.Billing, pool, ownedJobs(pool.Pending, owner, i), ownedJobs(pool.Upcoming, upOwner, i), st, out)
	}
	return out, next
}

// assignJobs decides, for jobs listed in several pools, which pool counts
// them: the one with the fewest tags (the most specific runner), then the
// first listed. It returns nil when no job is listed twice.
func assignJobs(pools []Pool, list func(*Pool) []Job) map[int64]int {
	if len(pools) < 2 {
		return nil
	}
	total := 0
	for i := range pools {
		total += len(list(&pools[i]))
	}
	owner := make(map[int64]int, total)
	dup := false
	for i := range pools {
		for _, j := range list(&pools[i]) {
			cur, seen := owner[j.ID]
			if !seen {
				owner[j.ID] = i
				continue
			}
			dup = true
			if len(pools[i].Settings.Tags) < len(pools[cur].Settings.Tags) {
				owner[j.ID] = i
			}
		}
	}
	if !dup {
		return nil
	}
	return owner
}

// ownedJobs are the jobs pool counts; all of them when owner is nil.
func ownedJobs(jobs []Job, owner map[int64]int, pool int) []Job {
	if owner == nil {
		return jobs
	}
	out := make([]Job, 0, len(jobs))
	for _, j := range jobs {
		if owner[j.ID] == pool {
			out = append(out, j)
		}
	}
	return out
}

// upcomingSlots is how many slots the next stages of pipelines in progress
// will want that the pool's current jobs will not give back when they end:
// the created jobs (each pipeline's next stage) less the jobs running,
// pending or waiting in the pool. A `docker;large` build after `docker` tests
// gets its Droplet booted while the tests run (the large pool has no jobs); a
// next stage no wider than the jobs in hand gets nothing.
// Only jobs created within upcoming_window count: a pipeline held at a manual
// job keeps its later jobs created for good.
func (p *Shoal) upcomingSlots(now time.Time, upcoming []Job, inHand int) int {
	window := p.params.durOr("upcoming_window", 15*time.Minute)
	if window <= 0 {
		return 0
	}
	n := 0
	for _, j := range upcoming {
		if now.Sub(j.CreatedAt) <= window {
			n++
		}
	}
	return max(n-inHand, 0)
}

func (p *Shoal) decidePool(now time.Time, billing config.BillingModel, pool *Pool, pending, created []Job, st *shoalPool, out []Decision) []Decision {
	set := p.params.overrideSettings(pool.Settings)
	name := set.Pool
	slots := set.CapacityPerInstance
	f := summarise(pool.Droplets, slots)

	p.learn(now, pool.Droplets, pending, st)
	warm, warmWhy := p.warmSlots(now, st)

	// Spare slots: the warm ones, and at least what the pool's idle_count and
	// scale_factor ask for (the user's floor, as in taskscaler).
	spare := max(warm, set.IdleCount, scaleFactorSlots(set, f.running))
	waiting := len(pool.Waiting)
	upcoming := p.upcomingSlots(now, created, f.running+len(pending)+waiting)
	want := len(pending) + waiting + upcoming + spare
	have := f.free + f.booting*slots

	out = deleteDrained(name, pool.Droplets, out)

	// Scale out.
	if want > have || f.live() < set.MinInstances {
		n := ceilDiv(want-have, slots)
		why := fmt.Sprintf("%d pending + %d for the next stages of running pipelines + %d spare slots (%s) > %d free and %d booting slots at %d per Droplet",
			len(pending)+waiting, upcoming, spare, warmWhy, f.free, f.booting*slots, slots)
		if need := set.MinInstances - f.live(); need > n {
			n = need
			why = fmt.Sprintf("min_instances is %d and %d are ready or booting", set.MinInstances, f.live())
		}
		if room := set.MaxInstances - f.total; n > room {
			why += fmt.Sprintf("; capped by max_instances %d (%d exist)", set.MaxInstances, f.total)
			n = room
		}
		if n > 0 {
			out = append(out, Decision{Kind: Create, Pool: name, Count: n, Reason: why})
		}
		return out
	}

	// Scale in: surplus free slots beyond what pending jobs and spare need.
	surplus := have - want
	if surplus <= 0 {
		return out
	}
	linger := p.params.durOr("linger", 0)
	if linger == 0 {
		linger = st.boot
	}
	if set.IdleTime > 0 && set.IdleTime < linger {
		linger = set.IdleTime
	}
	margin := p.params.durOr("hour_margin", 2*time.Minute)

	// After a foreseen spike, its idle slots go at once while the profile
	// expects fewer than profile_min jobs over the linger to come.
	spikeOver := st.foreseen > 0 && st.expectedWithin(now, linger) < p.profileMin()

	type cand struct {
		d    *Droplet
		free int
		key  time.Time // per-second: idle since; hourly: paid until
	}
	var cands []cand
	for i := range pool.Droplets {
		d := &pool.Droplets[i]
		if d.State != Ready {
			continue
		}
		c := cand{d: d, free: max(slots-d.RunningJobs, 0)}
		if billing == config.BillingHourly {
			c.key = billing.PaidUntil(d.CreatedAt, now)
		} else {
			c.key = d.idleSince()
		}
		cands = append(cands, c)
	}
	// Least loaded first, so whole Droplets free up; among equals, the one
	// idle longest (per-second) or whose paid hour ends first (hourly).
	slices.SortFunc(cands, func(a, b cand) int {
		return cmp.Or(cmp.Compare(a.d.RunningJobs, b.d.RunningJobs), a.key.Compare(b.key), cmp.Compare(a.d.ID, b.d.ID))
	})
	keep := f.live()
	lingerMax := p.lingerMax(now, linger, st)
	lingering := 0
	for _, c := range cands {
		if c.free == 0 || c.free > surplus || keep <= set.MinInstances {
			continue
		}
		d := c.d
		if d.RunningJobs > 0 {
			// Draining a busy Droplet frees it as soon as its jobs end. Worth it
			// only when nothing waits (its free slots would take the next job)
			// and only per-second: an hourly Droplet is paid to the hour anyway.
			// And only once a slot on it has stayed free for linger since its
			// last job ended, so a short lull does not drain the fleet.
			if billing == config.BillingHourly || len(pending)+waiting > 0 || now.Sub(d.idleSince()) < linger {
				continue
			}
			out = append(out, Decision{Kind: Drain, Pool: name, DropletID: d.ID,
				Reason: fmt.Sprintf("%d surplus slots; least loaded (%d of %d slots busy), draining frees a whole Droplet", surplus, d.RunningJobs, slots)})
		} else {
			var why string
			switch billing {
			case config.BillingHourly:
				left := c.key.Sub(now)
				if left > margin {
					continue // already paid: keep it until just before the hour ends
				}
				why = fmt.Sprintf("idle, %d surplus slots, and its paid hour ends in %s", surplus, secs(left))
			default:
				idle := now.Sub(d.idleSince())
				var spike, crowd bool
				if idle < linger {
					spike = st.foreseen >= float64(c.free) && spikeOver
					crowd = !spike && lingering >= lingerMax
					switch {
					case !spike && !crowd:
						lingering += c.free
						continue
					case crowd && c.free > surplus-lingering:
						continue // the lingering slots are kept on top of the warm ones
					}
				}
				if paid := billing.PaidUntil(d.CreatedAt, now); paid.After(now) {
					continue // inside the 60 s minimum: deleting saves nothing yet
				}
				why = fmt.Sprintf("idle %s ≥ linger %s, %d surplus slots; billed per second", secs(idle), secs(linger), surplus)
				switch {
				case spike:
					why = fmt.Sprintf("idle, %d surplus slots, and the spike the time of day foresaw has come: nothing more is expected; billed per second", surplus)
				case crowd:
					why = fmt.Sprintf("idle, %d surplus slots, and %d idle slots already linger for the jobs expected over the linger and a boot; billed per second", surplus, lingering)
				}
			}
			// Whichever way an idle slot goes, it is one fewer of the spike's.
			st.foreseen = max(st.foreseen-float64(c.free), 0)
			out = append(out, release(name, d, why))
		}
		surplus -= c.free
		keep--
	}
	return out
}

// profileMin is the jobs in one minute of the profile that make a spike:
// worth pre-warming for, left out of the rate when it comes as foreseen.
func (p *Shoal) profileMin() float64 { return p.params.floatOr("profile_min", 6) }

// lingerMax is how many idle slots may linger at once (per-second billing).
// The ski-rental rule is for one Droplet; many idle at once compete for the
// same few jobs to come, and only as many slots as jobs are expected over the
// linger and a boot (from the recent rate, or the time of day) stand a fair
// chance of one. Whole Droplets linger until their slots reach it, so one
// Droplet always may: with nothing known, that is plain ski rental.
func (p *Shoal) lingerMax(now time.Time, linger time.Duration, st *shoalPool) int {
	cover := p.params.floatOr("linger_cover", 1)
	if cover <= 0 {
		return math.MaxInt
	}
	window := linger + st.boot
	expected := max(st.rate*window.Seconds(), st.expectedWithin(now, window))
	return max(1, int(math.Ceil(cover*expected)))
}

// learn updates the pool's arrival rate, time-of-day profile and boot time.
func (p *Shoal) learn(now time.Time, ds []Droplet, pending []Job, st *shoalPool) {
	tau := p.params.durOr("rate_window", 10*time.Minute).Seconds()
	alpha := p.params.floatOr("profile_weight", 0.5)

	// Boot time from the snapshot: mean create→ready of the ready Droplets.
	var sum time.Duration
	n := 0
	for i := range ds {
		if !ds[i].ReadyAt.IsZero() {
			sum += ds[i].ReadyAt.Sub(ds[i].CreatedAt)
			n++
		}
	}
	switch {
	case n > 0:
		st.boot = sum / time.Duration(n)
	case st.boot == 0:
		st.boot = defaultBoot
	}

	minute := now.Truncate(time.Minute)
	if st.folded.IsZero() {
		st.folded = minute
	}
	// The profile is shared with the previous State: copy it before the
	// first change.
	owned := false
	day := func() *dayProfile {
		if !owned {
			cp := &dayProfile{}
			if st.day != nil {
				*cp = *st.day
			}
			st.day, owned = cp, true
		}
		return st.day
	}
	// Fold finished minutes into the profile, a day-to-day average per minute.
	stop := minute
	if st.restored {
		// Nobody looked since the State was saved (the daemon was down): only
		// the minute of the last look, whose arrivals were counted, is folded
		// in; the rest are not taken for minutes without arrivals.
		if next := st.at.Truncate(time.Minute).Add(time.Minute); next.Before(minute) {
			stop = next
		}
	}
	for steps := 0; st.folded.Before(stop) && steps < profileBuckets; steps++ {
		b, d := minuteOfDay(st.folded), day()
		d.profile[b] = (1-alpha)*d.profile[b] + alpha*d.counts[b]
		d.weight[b] = (1-alpha)*d.weight[b] + alpha
		d.counts[b] = 0
		st.folded = st.folded.Add(time.Minute)
	}
	st.folded = minute

	// Arrivals since the last look: pending jobs that were not pending then
	// (by ID: a queue time derived from GitLab's queued_duration moves with
	// each request's latency), plus jobs that started without ever being seen pending (a
	// runner can take a job between two looks). Those are the jobs started on
	// the pool's Droplets since the last look, less the pending jobs that have
	// left the queue since.
	if !st.at.IsZero() {
		if dt := now.Sub(st.at).Seconds(); dt > 0 {
			st.rate *= math.Exp(-dt / tau)
		}
	}
	// An arrival in a minute the profile expected a spike in, up to the
	// spike's size, is the spike coming as forecast (a nightly batch): it
	// says nothing of the rate to come, and counting it would keep a tenth of
	// the batch's Droplets warm for half an hour after it.
	if now.After(st.foreseenUntil) {
		st.foreseen = 0 // an hour after the spike
	}
	spikeMin := p.profileMin()
	arrived, stillPending := 0.0, 0
	count := func(b int, n float64) {
		d := day()
		unforeseen := n
		if spike := st.spikeAt(b); spike >= spikeMin {
			unforeseen -= min(n, max(spike-d.counts[b], 0))
		}
		d.counts[b] += n
		arrived += unforeseen
		if n > unforeseen {
			st.foreseen += n - unforeseen
			st.foreseenUntil = now.Add(time.Hour)
		}
	}
	ids := make(map[int64]bool, len(pending))
	for _, j := range pending {
		ids[j.ID] = true
		if st.pendingIDs[j.ID] {
			stillPending++
			continue
		}
		if st.restored && !j.QueuedAt.After(st.at) {
			continue // pending at the saved look: counted before the restart
		}
		b := minuteOfDay(j.QueuedAt)
		if j.QueuedAt.Before(minute) {
			b = minuteOfDay(now) // its own minute is already folded
		}
		count(b, 1)
	}
	started := 0
	jobs := make(map[int]int, len(ds))
	for i := range ds {
		n := ds[i].RunningJobs + ds[i].JobsDone
		jobs[ds[i].ID] = n
		if old, known := st.jobs[ds[i].ID]; known {
			started += max(n-old, 0)
		} else if st.jobs != nil {
			// A Droplet new since the last look. Not on the first look, nor
			// the first after a restart: those jobs were counted when pending.
			started += n
		}
	}
	if unseen := started - max(len(st.pendingIDs)-stillPending, 0); unseen > 0 {
		count(minuteOfDay(now), float64(unseen))
	}
	st.jobs = jobs
	st.pendingIDs = ids
	st.at = now
	st.restored = false
	st.rate += arrived / tau
}

// warmSlots is how many slots to keep warm, the larger of two estimates:
//   - the recent rate: the jobs expected in the next boot time plus a minute (a
//     Droplet created now is ready only then), times the warm factor;
//   - the time of day: the busiest minute the profile expects to begin before
//     a Droplet created now would be ready (plus half a minute of slack for
//     the reconcile interval), when that minute is a spike (at least
//     profile_min jobs): a nightly pipeline of 200 jobs at 02:00 gets its
//     Droplets started at about 01:58:30. Everyday noise in the profile stays
//     below profile_min and costs nothing.
func (p *Shoal) warmSlots(now time.Time, st *shoalPool) (int, string) {
	horizon := st.boot + time.Minute
	fromRate := p.params.floatOr("warm", 0.5) * st.rate * horizon.Seconds()
	peak, at := 0.0, time.Time{}
	if p.params.floatOr("profile_weight", 0.5) > 0 {
		last := now.Add(st.boot + 30*time.Second)
		for m := now.Truncate(time.Minute); !m.After(last); m = m.Add(time.Minute) {
			b := minuteOfDay(m)
			v := st.expected(b)
			if !m.After(now) {
				v -= st.counted(b) // this minute has begun: what came is no longer expected
			}
			if v > peak {
				peak, at = v, m
			}
		}
		if peak < p.profileMin() {
			peak = 0
		}
	}
	// Round, not ceil: a trickle of 0.3 expected jobs keeps nothing warm, so
	// the pool reaches zero.
	if peak > fromRate {
		warm := int(math.Round(peak))
		return warm, fmt.Sprintf("%d warm: the time of day expects %.1f jobs at %s", warm, peak, at.UTC().Format("15:04"))
	}
	warm := int(math.Round(fromRate))
	return warm, fmt.Sprintf("%d warm: %.1f jobs/min recently, over the next %s", warm, st.rate*60, secs(horizon))
}

// scaleFactorSlots is taskscaler's scale_factor rule: spare slots as a factor
// of the slots in use, capped by scale_factor_limit when that is set.
func scaleFactorSlots(s config.Settings, inUse int) int {
	if s.ScaleFactor <= 0 {
		return 0
	}
	n := int(math.Ceil(s.ScaleFactor * float64(inUse)))
	if s.ScaleFactorLimit > 0 && n > s.ScaleFactorLimit {
		n = s.ScaleFactorLimit
	}
	return n
}
