package policy

import (
	"encoding/json"
	"fmt"
	"time"
)

// stateVersion is the version of the persisted State's layout.
const stateVersion = 1

// persistedState is what a State keeps across restarts: what shoal's policy
// has learned of each pool (the arrival rate, the boot time, the time-of-day
// profile). What it knows of the jobs and Droplets of the moment is left
// out: a restarted daemon reads those afresh.
type persistedState struct {
	Version int                       `json:"version"`
	Shoal   map[string]persistedShoal `json:"shoal,omitempty"`
}

type persistedShoal struct {
	At       time.Time `json:"at"`
	RatePerS float64   `json:"rate_per_s"`
	BootS    float64   `json:"boot_s"`
	Folded   time.Time `json:"folded"`
	// Profile, Weight and Counts are per minute of the day (UTC), or absent
	// before the first arrival.
	Profile []float64 `json:"profile,omitempty"`
	Weight  []float64 `json:"weight,omitempty"`
	Counts  []float64 `json:"counts,omitempty"`
}

// MarshalJSON encodes what the State has learned, to be kept across restarts.
func (s State) MarshalJSON() ([]byte, error) {
	ps := persistedState{Version: stateVersion, Shoal: make(map[string]persistedShoal, len(s.shoal))}
	for name, st := range s.shoal {
		p := persistedShoal{At: st.at, RatePerS: st.rate, BootS: st.boot.Seconds(), Folded: st.folded}
		if st.day != nil {
			p.Profile, p.Weight, p.Counts = st.day.profile[:], st.day.weight[:], st.day.counts[:]
		}
		ps.Shoal[name] = p
	}
	return json.Marshal(ps)
}

// UnmarshalJSON restores a State that MarshalJSON encoded.
func (s *State) UnmarshalJSON(b []byte) error {
	var ps persistedState
	if err := json.Unmarshal(b, &ps); err != nil {
		return err
	}
	if ps.Version != stateVersion {
		return fmt.Errorf("policy state version %d, want %d", ps.Version, stateVersion)
	}
	out := State{shoal: make(map[string]*shoalPool, len(ps.Shoal))}
	for name, p := range ps.Shoal {
		if p.RatePerS < 0 || p.BootS < 0 {
			return fmt.Errorf("policy state of pool %s: negative rate or boot time", name)
		}
		st := &shoalPool{at: p.At, rate: p.RatePerS, boot: time.Duration(p.BootS * float64(time.Second)), folded: p.Folded, restored: true}
		if p.Profile != nil || p.Weight != nil || p.Counts != nil {
			if len(p.Profile) != profileBuckets || len(p.Weight) != profileBuckets || len(p.Counts) != profileBuckets {
				return fmt.Errorf("policy state of pool %s: the time-of-day profile needs %d minutes", name, profileBuckets)
			}
			st.day = &dayProfile{}
			copy(st.day.profile[:], p.Profile)
			copy(st.day.weight[:], p.Weight)
			copy(st.day.counts[:], p.Counts)
		}
		out.shoal[name] = st
	}
	*s = out
	return nil
}
