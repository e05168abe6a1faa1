package doemu

import (
	"errors"
	"fmt"
	"net/http"
	"time"
)

// Faults injects the failures a client of DigitalOcean's API must survive. Draws
// come from the emulator's seeded generator, so a run with the same seed and the
// same requests fails the same way.
type Faults struct {
	// ErrorRate is the fraction of requests answered 500 or 503 before anything is done.
	ErrorRate float64
	// Latency is added to every request, slept on the emulator's clock.
	Latency Range
	// ActionErrorRate is the fraction of actions (Droplet create included) that end "errored".
	ActionErrorRate float64
	// LostCreateRate is the fraction of Droplet creates that make the Droplets and
	// then answer 500: the case that turns a client's retry into a duplicate.
	LostCreateRate float64
	// ListLag hides Droplets younger than this from Droplet listings (a Get by
	// ID still finds them): DigitalOcean's listings are eventually consistent,
	// and a Droplet just made shows up in them a few seconds later.
	ListLag time.Duration
}

func (f Faults) validate() error {
	var errs []error
	for name, rate := range map[string]float64{
		"error rate": f.ErrorRate, "action error rate": f.ActionErrorRate, "lost create rate": f.LostCreateRate,
	} {
		if rate < 0 || rate > 1 {
			errs = append(errs, fmt.Errorf("fault %s %v is not a fraction between 0 and 1", name, rate))
		}
	}
	if f.ListLag < 0 {
		errs = append(errs, errors.New("fault list lag must not be negative"))
	}
	if f.Latency.Min < 0 || f.Latency.Max < 0 {
		errs = append(errs, errors.New("fault latency must not be negative"))
	}
	return errors.Join(errs...)
}

// injectFault sleeps the configured latency and may answer the request with a 5xx;
// it reports whether it did.
func (s *Server) injectFault(w http.ResponseWriter, r *http.Request) bool {
	s.mu.Lock()
	f := s.opts.Faults
	delay := f.Latency.sample(s.rng)
	fail := s.chance(f.ErrorRate)
	unavailable := fail && s.rng.IntN(2) == 0
	if fail {
		s.stats.InjectedFaults++
	}
	s.mu.Unlock()

	if delay > 0 {
		if err := s.clock.Sleep(r.Context(), delay); err != nil {
			return true // the client went away
		}
	}
	switch {
	case unavailable:
		writeError(w, http.StatusServiceUnavailable, "service_unavailable", "The service is temporarily unavailable. Please try again later.")
	case fail:
		writeError(w, http.StatusInternalServerError, "server_error", "Server was unable to give you a response.")
	}
	return fail
}

// chance reports true with probability p. Call with s.mu held.
func (s *Server) chance(p float64) bool {
	return p > 0 && s.rng.Float64() < p
}
