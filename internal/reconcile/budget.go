package reconcile

import (
	"time"
)

// budget is shoal's share of DigitalOcean's rate limits (250 per minute and
// 5,000 per hour per token), kept on the injected clock as a sliding window of
// the requests made. Deferring an action to the next reconcile is always
// better than a 429.
type budget struct {
	perMinute, perHour int
	times              []time.Time // ascending, the last hour
	blockedUntil       time.Time   // after a 429: nothing until then
}

// block spends nothing until t (a 429 said the limit is reached), without
// booking requests that were never made into the hourly window.
func (b *budget) block(t time.Time) {
	if t.After(b.blockedUntil) {
		b.blockedUntil = t
	}
}

func (b *budget) trim(now time.Time) {
	i := 0
	for i < len(b.times) && now.Sub(b.times[i]) >= time.Hour {
		i++
	}
	b.times = b.times[i:]
}

// record notes n requests made at now.
func (b *budget) record(now time.Time, n int) {
	for range n {
		b.times = append(b.times, now)
	}
}

// available is how many more requests fit in both windows at now.
func (b *budget) available(now time.Time) int {
	if now.Before(b.blockedUntil) {
		return 0
	}
	b.trim(now)
	inMinute := 0
	for i := len(b.times) - 1; i >= 0 && now.Sub(b.times[i]) < time.Minute; i-- {
		inMinute++
	}
	return max(0, min(b.perMinute-inMinute, b.perHour-len(b.times)))
}
