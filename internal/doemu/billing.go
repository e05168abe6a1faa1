package doemu

import (
	"maps"
	"slices"
	"time"

	"github.com/shoalci/shoal/internal/config"
)

// Charge is one Droplet's entry in the billing ledger.
type Charge struct {
	DropletID    int
	Size         string
	PriceHourly  float64
	PriceMonthly float64
	Start, End   time.Time // End is zero while the Droplet exists
}

type ledger struct {
	model   config.BillingModel
	charges []Charge
	open    map[int]int // Droplet ID → index in charges
	// closedUSD is what the Droplets deleted so far cost in all, and lastEnd
	// the latest of their ends: a simulator asks for the running total every
	// minute, and this keeps that from costing a walk over every Droplet ever.
	closedUSD float64
	lastEnd   time.Time
}

func (l *ledger) start(id int, sz size, at time.Time) {
	if l.open == nil {
		l.open = map[int]int{}
	}
	l.open[id] = len(l.charges)
	l.charges = append(l.charges, Charge{DropletID: id, Size: sz.Slug, PriceHourly: sz.PriceHourly, PriceMonthly: sz.PriceMonthly, Start: at})
}

func (l *ledger) stop(id int, at time.Time) {
	if i, ok := l.open[id]; ok {
		l.charges[i].End = at
		delete(l.open, id)
		l.closedUSD += cost(l.model, l.charges[i], time.Time{}, at)
		if at.After(l.lastEnd) {
			l.lastEnd = at
		}
	}
}

// cost is what c costs under model m for the part of its life inside [from,
// to). A Droplet never costs more in a calendar month than its monthly price.
func cost(m config.BillingModel, c Charge, from, to time.Time) float64 {
	start, end := c.Start, c.End
	if end.IsZero() || end.After(to) {
		end = to
	}
	if start.Before(from) {
		start = from
	}
	var total float64
	for seg := start; seg.Before(end); {
		segEnd := earlier(end, monthStart(seg).AddDate(0, 1, 0))
		d := segEnd.Sub(seg)
		seconds := d.Seconds()
		// Each started hour, or the per-second minimum where the Droplet's life begins.
		if m == config.BillingHourly || seg.Equal(c.Start) {
			seconds = m.BilledSeconds(d)
		}
		total += min(seconds/3600*c.PriceHourly, c.PriceMonthly)
		seg = segEnd
	}
	return total
}

func earlier(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// Charges returns a copy of the ledger, in creation order.
func (s *Server) Charges() []Charge {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Charge(nil), s.ledger.charges...)
}

// BilledUSD is the total charged for Droplets from the first to the moment at.
func (s *Server) BilledUSD(at time.Time) float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := &s.ledger
	var total float64
	if !at.Before(l.lastEnd) { // every deleted Droplet is wholly before at
		// In creation order, so that the float sum is the same every time.
		open := slices.Sorted(maps.Values(l.open))
		total = l.closedUSD
		for _, i := range open {
			total += cost(l.model, l.charges[i], time.Time{}, at)
		}
		return total
	}
	for _, c := range l.charges {
		total += cost(l.model, c, time.Time{}, at)
	}
	return total
}

// LiveDroplets is how many Droplets exist (and are billed) now.
func (s *Server) LiveDroplets() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.ledger.open)
}

func monthStart(t time.Time) time.Time {
	t = t.UTC()
	return time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
}
