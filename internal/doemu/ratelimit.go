package doemu

import (
	"math"
	"net/http"
	"sort"
	"strconv"
	"time"
)

// rateWindow remembers when a token's admitted requests happened, over the last hour:
// DigitalOcean's limits are sliding windows of 250 per minute and 5,000 per hour.
type rateWindow struct {
	times []time.Time // ascending
}

func (rw *rateWindow) trim(now time.Time) {
	cut := sort.Search(len(rw.times), func(i int) bool { return now.Sub(rw.times[i]) < time.Hour })
	if cut > 0 {
		rw.times = append(rw.times[:0], rw.times[cut:]...)
	}
}

// countSince reports how many requests happened after t.
func (rw *rateWindow) countSince(t time.Time) (n int, oldest time.Time) {
	i := sort.Search(len(rw.times), func(i int) bool { return rw.times[i].After(t) })
	if i == len(rw.times) {
		return 0, time.Time{}
	}
	return len(rw.times) - i, rw.times[i]
}

// admit counts the request against token's budget, sets the ratelimit-* headers,
// and on refusal also retry-after. It reports whether the request may proceed.
func (s *Server) admit(w http.ResponseWriter, token string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock.Now()
	rw := s.limits[token]
	if rw == nil {
		rw = &rateWindow{}
		s.limits[token] = rw
	}
	rw.trim(now)

	perMin, perHour := s.opts.RateLimitPerMinute, s.opts.RateLimitPerHour
	inMin, oldestMin := rw.countSince(now.Add(-time.Minute))
	inHour, oldestHour := rw.countSince(now.Add(-time.Hour))

	overMin := perMin > 0 && inMin >= perMin
	overHour := perHour > 0 && inHour >= perHour
	admitted := !overMin && !overHour
	var wait time.Duration
	if overMin {
		wait = max(wait, oldestMin.Add(time.Minute).Sub(now))
	}
	if overHour {
		wait = max(wait, oldestHour.Add(time.Hour).Sub(now))
	}
	if admitted {
		rw.times = append(rw.times, now)
		inHour++
		if oldestHour.IsZero() {
			oldestHour = now
		}
	}

	// The headers describe the hourly window, as DigitalOcean's do; reset is when
	// the oldest request in it stops counting.
	limit, used, reset := perHour, inHour, oldestHour.Add(time.Hour)
	if perHour <= 0 {
		limit, used, reset = perMin, inMin, now.Add(time.Minute)
	}
	h := w.Header()
	if limit > 0 {
		h.Set("ratelimit-limit", strconv.Itoa(limit))
		h.Set("ratelimit-remaining", strconv.Itoa(max(limit-used, 0)))
		h.Set("ratelimit-reset", strconv.FormatInt(reset.Unix(), 10))
	}
	if !admitted {
		s.stats.RateLimited++
		h.Set("retry-after", strconv.Itoa(int(math.Ceil(max(wait, time.Second).Seconds()))))
	}
	return admitted
}
