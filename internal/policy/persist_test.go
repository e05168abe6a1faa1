package policy_test

import (
	"encoding/json"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shoalci/shoal/internal/policy"
)

// What shoal learned survives a restart: a State saved after a nightly batch
// and read back pre-warms the next batch as if the daemon had never stopped,
// and a night nobody saw while it was down is not learned as a night without
// the batch.
func TestShoalStateSurvivesARestart(t *testing.T) {
	decide := shoalDecides()
	night := time.Date(2026, 11, 23, 2, 0, 0, 0, time.UTC)
	_, st := decide(policy.State{}, night.Add(5*time.Second), jobs(200, night))
	_, st = decide(st, night.Add(10*time.Minute), nil)

	saved, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	var restored policy.State
	if err := json.Unmarshal(saved, &restored); err != nil {
		t.Fatalf("read back %s: %v", saved, err)
	}
	before, _ := st.ShoalPool("docker")
	after, ok := restored.ShoalPool("docker")
	if !ok || after.Boot != before.Boot || after.ArrivalsPerMinute != before.ArrivalsPerMinute || after.ProfileAt(night) != before.ProfileAt(night) {
		t.Fatalf("restored %+v (profile at 02:00 %v), saved %+v (%v)", after, after.ProfileAt(night), before, before.ProfileAt(night))
	}

	// Down from 02:10 until noon the next day, across that night's 02:00.
	_, restored = decide(restored, night.Add(34*time.Hour), nil)
	ds, _ := decide(restored, night.Add(48*time.Hour-2*time.Minute), nil)
	if got := summary(ds); got != "create docker 200" {
		t.Errorf("at 01:58 two nights on, restored: %q, want %q: the unseen night was learned as empty", got, "create docker 200")
	}
	// Without the restart, that night is seen, and seen without a batch.
	_, st = decide(st, night.Add(34*time.Hour), nil)
	if ds, _ := decide(st, night.Add(48*time.Hour-2*time.Minute), nil); summary(ds) == "create docker 200" {
		t.Errorf("a night seen without its batch did not fade the profile: %q", summary(ds))
	}
}

// The jobs pending or running when the State was saved were counted then: a
// restored State does not count them again, only what came after.
func TestShoalStateAfterARestartCountsOnlyNewArrivals(t *testing.T) {
	at := time.Date(2026, 11, 23, 2, 0, 0, 0, time.UTC)
	queued := jobs(50, at)
	busy := policy.Droplet{ID: 1, State: policy.Ready, CreatedAt: at.Add(-time.Hour), ReadyAt: at.Add(-59 * time.Minute), RunningJobs: 1, JobsDone: 30}
	decides := shoalDecides()
	decide := func(st policy.State, now time.Time, pending []policy.Job) policy.State {
		_, st = decides(st, now, pending, busy)
		return st
	}
	st := decide(policy.State{}, at.Add(5*time.Second), queued)
	saved, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	var restored policy.State
	if err := json.Unmarshal(saved, &restored); err != nil {
		t.Fatal(err)
	}
	// 20 s later the same 50 jobs wait, the same Droplet is busy, and 10 more came.
	later := at.Add(25 * time.Second)
	more := append(slices.Clone(queued), jobs(10, later.Add(-time.Second))...)
	for i := range more[50:] {
		more[50+i].ID += 1000
	}
	kept := decide(decide(st, later, more), at.Add(90*time.Second), more)
	back := decide(decide(restored, later, more), at.Add(90*time.Second), more)
	k, _ := kept.ShoalPool("docker")
	b, _ := back.ShoalPool("docker")
	if math.Abs(b.ArrivalsPerMinute-k.ArrivalsPerMinute) > 1e-9 || b.ProfileAt(at) != k.ProfileAt(at) {
		t.Errorf("after a restart: %.3f jobs/min, %v at 02:00; without one: %.3f jobs/min, %v: the jobs seen before the restart were counted twice",
			b.ArrivalsPerMinute, b.ProfileAt(at), k.ArrivalsPerMinute, k.ProfileAt(at))
	}
}

func TestShoalStateRejectsWhatItCannotRead(t *testing.T) {
	for _, tc := range []struct{ name, json, want string }{
		{"not JSON", `{`, "unexpected end"},
		{"another version", `{"version":2}`, "version 2"},
		{"a short profile", `{"version":1,"shoal":{"docker":{"profile":[1],"weight":[1],"counts":[0]}}}`, "1440 minutes"},
		{"a negative rate", `{"version":1,"shoal":{"docker":{"rate_per_s":-1}}}`, "negative"},
	} {
		var st policy.State
		if err := json.Unmarshal([]byte(tc.json), &st); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error saying %q", tc.name, err, tc.want)
		}
	}
}
