// Package doemu emulates the subset of DigitalOcean's API v2 that shoal uses: the
// same paths, JSON shapes, status codes, error bodies, rate limits and lifecycle
// timing, on an injected clock, so every part of shoal can be tested for real
// through godo without an account, and a week of CI can be replayed in seconds.
package doemu

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	mrand "math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/shoalci/shoal/internal/clock"
	"github.com/shoalci/shoal/internal/config"
)

// Options configure an emulator. The zero value is usable: real clock, a random
// token must then be given in Tokens for any request to succeed.
type Options struct {
	// Clock drives lifecycle timing (boot, actions) and rate-limit windows.
	Clock clock.Clock
	// Tokens are the accepted bearer tokens; each has its own rate-limit budget.
	Tokens []string
	// BootDelay is how long a new Droplet stays "new" before it becomes "active":
	// drawn uniformly from [Min, Max]. Default 45–75 s.
	BootDelay Range
	// ActionDelay is how long a Droplet or volume action stays "in-progress". Default 5–10 s.
	ActionDelay Range
	// RateLimitPerMinute and RateLimitPerHour are the per-token budgets. Defaults 250 and 5,000;
	// negative disables that window.
	RateLimitPerMinute, RateLimitPerHour int
	// DropletLimit and VolumeLimit are the account's limits. Defaults 500 and 100.
	DropletLimit, VolumeLimit int
	// Billing selects how Droplets are charged. Default per-second with a 60 s minimum.
	Billing config.BillingModel
	// Faults injects errors and latency; see Faults.
	Faults Faults
	// Seed makes boot delays, IDs, addresses and faults reproducible.
	Seed uint64
	// Databases seed the managed database clusters.
	Databases []DatabaseSeed
	// OnDroplet, when set, hears every Droplet that is created, becomes active
	// or is deleted, after the emulator's lock is released: a simulator boots
	// and stops runners from it.
	OnDroplet func(DropletEvent)
	// ShutdownDone, when set, is the guest's side of a graceful shutdown
	// (the shutdown action presses the ACPI power button; the Droplet powers
	// off once its services have stopped): the action completes, and the
	// Droplet goes "off", only once it returns true. It is asked, outside
	// the emulator's lock, when the action's delay has passed and every
	// ActionDelay.Min (at least a second) after that. Without it a shutdown
	// takes ActionDelay, as other actions do.
	ShutdownDone func(dropletID int) bool
}

// DropletEvent is a change in a Droplet's life.
type DropletEvent struct {
	Kind string // "created", "active", "deleted", or a Droplet action's type once it completed ("shutdown")
	ID   int
	Name string
	Tags []string
	At   time.Time
}

// Range is a closed interval of durations, sampled uniformly.
type Range struct{ Min, Max time.Duration }

func (r Range) sample(rng *mrand.Rand) time.Duration {
	if r.Max <= r.Min {
		return r.Min
	}
	return r.Min + time.Duration(rng.Int64N(int64(r.Max-r.Min)+1))
}

// Server is the emulator. It is an http.Handler; every method is safe for
// concurrent use.
type Server struct {
	opts  Options
	clock clock.Clock
	mux   *http.ServeMux

	mu        sync.Mutex
	rng       *mrand.Rand
	nextID    int
	droplets  map[int]*droplet
	actions   map[int]*action
	volumes   map[string]*volume
	keys      map[int]*sshKey
	databases map[string]*database
	snapshots []image
	vpcs      map[string]string // region → default VPC
	ledger    ledger

	// Creation order, which is the order DigitalOcean lists things in.
	dropletOrder, actionOrder, keyOrder []int
	volumeOrder, databaseOrder          []string

	limits map[string]*rateWindow
	stats  Stats
	events []DropletEvent // for OnDroplet, sent by flushEvents
}

// Stats counts what the emulator served, for the simulator's report.
type Stats struct {
	Requests, RateLimited, InjectedFaults int
}

// New returns an emulator with opts' defaults filled in.
func New(opts Options) (*Server, error) {
	if opts.Clock == nil {
		opts.Clock = clock.Real{}
	}
	if opts.BootDelay == (Range{}) {
		opts.BootDelay = Range{45 * time.Second, 75 * time.Second}
	}
	if opts.ActionDelay == (Range{}) {
		opts.ActionDelay = Range{5 * time.Second, 10 * time.Second}
	}
	if opts.RateLimitPerMinute == 0 {
		opts.RateLimitPerMinute = 250
	}
	if opts.RateLimitPerHour == 0 {
		opts.RateLimitPerHour = 5000
	}
	if opts.DropletLimit == 0 {
		opts.DropletLimit = 500
	}
	if opts.VolumeLimit == 0 {
		opts.VolumeLimit = 100
	}
	if opts.Billing == "" {
		opts.Billing = config.BillingPerSecond
	}
	if !opts.Billing.Valid() {
		return nil, fmt.Errorf("billing model %q: use %q or %q", opts.Billing, config.BillingPerSecond, config.BillingHourly)
	}
	if err := opts.Faults.validate(); err != nil {
		return nil, err
	}
	s := &Server{
		opts:      opts,
		clock:     opts.Clock,
		rng:       mrand.New(mrand.NewPCG(opts.Seed, opts.Seed^0x5ea1)),
		nextID:    100_000_000,
		droplets:  map[int]*droplet{},
		actions:   map[int]*action{},
		volumes:   map[string]*volume{},
		keys:      map[int]*sshKey{},
		databases: map[string]*database{},
		limits:    map[string]*rateWindow{},
	}
	s.ledger.model = opts.Billing
	for _, seed := range opts.Databases {
		if err := s.addDatabase(seed); err != nil {
			return nil, err
		}
	}
	s.routes()
	return s, nil
}

// NewToken returns a random token in DigitalOcean's personal-access-token format.
func NewToken() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return "dop_v1_" + hex.EncodeToString(b)
}

// Stats returns the request counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// SetFaults replaces the fault-injection settings, e.g. to start or end a storm mid-test.
func (s *Server) SetFaults(f Faults) error {
	if err := f.validate(); err != nil {
		return err
	}
	s.mu.Lock()
	s.opts.Faults = f
	s.mu.Unlock()
	return nil
}

// newID returns the next integer ID; IDs are shared by Droplets, actions and keys,
// which keeps them unique and increasing, as DigitalOcean's are. Call with s.mu held.
func (s *Server) newID() int {
	s.nextID += 1 + s.rng.IntN(7)
	return s.nextID
}

// newUUID returns a random (seeded) RFC 4122 version-4 UUID. Call with s.mu held.
func (s *Server) newUUID() string {
	var b [16]byte
	for i := range b {
		b[i] = byte(s.rng.UintN(256))
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/metadata/") {
		s.serveMetadata(w, r) // the metadata service needs no token, as on a Droplet
		return
	}
	reqID := s.requestID()
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("X-Request-Id", reqID) // error bodies quote it as request_id

	token, ok := bearerToken(r)
	if !ok || !s.validToken(token) {
		writeError(w, http.StatusUnauthorized, "unauthorized", "Unable to authenticate you")
		return
	}
	if !s.admit(w, token) {
		writeError(w, http.StatusTooManyRequests, "too_many_requests", "API Rate limit exceeded.")
		return
	}
	if s.injectFault(w, r) {
		return
	}
	// Unknown paths and methods get DigitalOcean's JSON 404, not the mux's text one.
	if _, pattern := s.mux.Handler(r); pattern == "" {
		writeError(w, http.StatusNotFound, "not_found", "The resource you were accessing could not be found.")
		return
	}
	s.mux.ServeHTTP(w, r) // (only ServeHTTP fills in the path values)
	s.flushEvents()
}

// note queues a Droplet event. Call with s.mu held.
func (s *Server) note(kind string, d *droplet) {
	if s.opts.OnDroplet != nil {
		s.events = append(s.events, DropletEvent{Kind: kind, ID: d.id, Name: d.name, Tags: d.tags, At: s.clock.Now()})
	}
}

// flushEvents delivers queued events outside the lock, in order.
func (s *Server) flushEvents() {
	if s.opts.OnDroplet == nil {
		return
	}
	s.mu.Lock()
	evs := s.events
	s.events = nil
	s.mu.Unlock()
	for _, ev := range evs {
		s.opts.OnDroplet(ev)
	}
}

func (s *Server) requestID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.Requests++
	return s.newUUID()
}

func bearerToken(r *http.Request) (string, bool) {
	auth := r.Header.Get("Authorization")
	token, ok := strings.CutPrefix(auth, "Bearer ")
	return strings.TrimSpace(token), ok && token != ""
}

func (s *Server) validToken(token string) bool {
	for _, t := range s.opts.Tokens {
		if constantTimeEqual(t, token) {
			return true
		}
	}
	return false
}
