package policy_test

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/shoalci/shoal/internal/config"
	"github.com/shoalci/shoal/internal/policy"
)

// bigSnapshot: 1,000 Droplets and 5,000 pending jobs over two pools whose
// tags overlap (so shoal's de-duplication runs too).
func bigSnapshot() policy.Snapshot {
	r := rand.New(rand.NewPCG(7, 7))
	now := t0
	small := settings(func(s *config.Settings) { s.CapacityPerInstance = 2; s.MaxInstances = 2000 })
	large := small
	large.Pool, large.Tags = "large", []string{"docker", "large"}
	pools := []policy.Pool{{Settings: small}, {Settings: large}}
	for i := range 5000 {
		j := policy.Job{ID: int64(i), Tags: []string{"docker"}, QueuedAt: now.Add(-time.Duration(r.IntN(900)) * time.Second)}
		pools[1].Pending = append(pools[1].Pending, j)
		if i%10 != 0 {
			pools[0].Pending = append(pools[0].Pending, j)
		}
	}
	for i := range 1000 {
		created := now.Add(-time.Duration(60+r.IntN(7200)) * time.Second)
		d := policy.Droplet{ID: i + 1, State: policy.DropletState(r.IntN(3)), CreatedAt: created}
		if d.State != policy.Booting {
			d.ReadyAt = created.Add(70 * time.Second)
			d.RunningJobs = r.IntN(3)
			d.JobsDone = r.IntN(20)
			d.LastJobFinishedAt = d.ReadyAt.Add(time.Duration(r.IntN(60)) * time.Second)
		}
		pools[i%2].Droplets = append(pools[i%2].Droplets, d)
	}
	return policy.Snapshot{Now: now, Billing: config.BillingPerSecond, Pools: pools}
}

func BenchmarkDecide(b *testing.B) {
	s := bigSnapshot()
	for _, name := range policy.Names() {
		b.Run(name, func(b *testing.B) {
			pol := mustPolicy(b, name, nil)
			_, st := pol.Decide(s, policy.State{})
			later := s
			later.Now = s.Now.Add(15 * time.Second)
			b.ReportAllocs()
			for b.Loop() {
				pol.Decide(later, st)
			}
		})
	}
}
