package policy

import (
	"fmt"
	"time"
)

// fleet summarises one pool's Droplets.
type fleet struct {
	slots    int // slots per Droplet
	total    int // every Droplet, draining included (what max_instances bounds)
	booting  int
	ready    int // ready and not draining
	draining int
	running  int // running jobs on every Droplet
	// free counts free slots on ready, non-draining Droplets.
	free int
}

func summarise(ds []Droplet, slots int) fleet {
	f := fleet{slots: slots, total: len(ds)}
	for i := range ds {
		d := &ds[i]
		f.running += d.RunningJobs
		switch d.State {
		case Booting:
			f.booting++
		case Ready:
			f.ready++
			if fr := slots - d.RunningJobs; fr > 0 {
				f.free += fr
			}
		case Draining:
			f.draining++
		}
	}
	return f
}

// live is the Droplets that count as the pool's capacity: booting and ready.
func (f fleet) live() int { return f.booting + f.ready }

// deleteDrained deletes every draining Droplet whose jobs have finished. Every
// policy ends a drain this way: the runner takes no new jobs, so once its
// running jobs are done the Droplet can go without killing anything.
func deleteDrained(pool string, ds []Droplet, out []Decision) []Decision {
	for i := range ds {
		d := &ds[i]
		if d.State == Draining && d.RunningJobs == 0 {
			out = append(out, Decision{Kind: Delete, Pool: pool, DropletID: d.ID,
				Reason: fmt.Sprintf("drained: no running jobs left (%d done)", d.JobsDone)})
		}
	}
	return out
}

// release deletes an idle Droplet and drains a busy one. The reconciler
// deletes an idle Droplet only after draining its runner and hearing that no
// job is running (one may have started since the snapshot), so deleting at
// once is safe, and saves the reconcile interval a drain-then-delete would
// bill on every Droplet released.
func release(pool string, d *Droplet, why string) Decision {
	if d.RunningJobs == 0 {
		return Decision{Kind: Delete, Pool: pool, DropletID: d.ID, Reason: why}
	}
	return Decision{Kind: Drain, Pool: pool, DropletID: d.ID, Reason: why}
}

func ceilDiv(a, b int) int {
	if a <= 0 {
		return 0
	}
	return (a + b - 1) / b
}

func secs(d time.Duration) string {
	return d.Round(time.Second).String()
}
