package doemu

import (
	"net/http"
	"net/url"
	"strconv"
	"time"
)

type action struct {
	ID           int
	Status       string // in-progress, completed, errored
	Type         string
	startedAt    time.Time
	completedAt  time.Time
	resourceID   int // 0 for volumes, whose IDs are not integers
	resourceType string
	region       region
	droplet      int    // the Droplet this action keeps busy, if any
	volumeID     string // the volume a volume action is about
}

type actionJSON struct {
	ID           int     `json:"id"`
	Status       string  `json:"status"`
	Type         string  `json:"type"`
	StartedAt    string  `json:"started_at"`
	CompletedAt  *string `json:"completed_at"`
	ResourceID   *int    `json:"resource_id"`
	ResourceType string  `json:"resource_type"`
	Region       region  `json:"region"`
	RegionSlug   string  `json:"region_slug"`
}

func (a *action) json() actionJSON {
	j := actionJSON{ID: a.ID, Status: a.Status, Type: a.Type, StartedAt: a.startedAt.UTC().Format(time.RFC3339),
		ResourceType: a.resourceType, Region: a.region, RegionSlug: a.region.Slug}
	if !a.completedAt.IsZero() {
		c := a.completedAt.UTC().Format(time.RFC3339)
		j.CompletedAt = &c
	}
	if a.resourceID != 0 {
		j.ResourceID = &a.resourceID
	}
	return j
}

// startAction records an in-progress action that completes after delay, or ends
// "errored" under fault injection; onDone applies its effect, seeing the final
// status. The Droplet it names (if any) has it as its one pending event until then.
// Call with s.mu held.
func (s *Server) startAction(dropletID int, resourceType, typ string, reg region, delay time.Duration, onDone func(*action)) *action {
	return s.startActionUntil(dropletID, resourceType, typ, reg, delay, nil, onDone)
}

// startActionUntil is startAction for an action that lasts as long as the
// guest takes (a graceful shutdown): once delay has passed it completes only
// when until, asked outside the lock every ActionDelay.Min (at least a
// second), says so, or the Droplet is gone. A nil until is startAction.
func (s *Server) startActionUntil(dropletID int, resourceType, typ string, reg region, delay time.Duration, until func() bool, onDone func(*action)) *action {
	a := &action{ID: s.newID(), Status: "in-progress", Type: typ, startedAt: s.clock.Now(),
		resourceType: resourceType, region: reg, droplet: dropletID}
	if resourceType == "droplet" {
		a.resourceID = dropletID
	}
	errored := s.chance(s.opts.Faults.ActionErrorRate)
	s.actions[a.ID] = a
	s.actionOrder = append(s.actionOrder, a.ID)
	every := max(s.opts.ActionDelay.Min, time.Second)
	var finish func()
	finish = func() {
		if until != nil && !errored {
			s.mu.Lock()
			gone := s.droplets[dropletID] == nil
			s.mu.Unlock()
			if !gone && !until() {
				s.clock.AfterFunc(every, finish)
				return
			}
		}
		defer s.flushEvents()
		s.mu.Lock()
		defer s.mu.Unlock()
		a.Status, a.completedAt = "completed", s.clock.Now()
		if errored {
			a.Status = "errored"
			s.stats.InjectedFaults++
		}
		if d := s.droplets[a.droplet]; d != nil && d.pending == a {
			d.pending = nil
		}
		onDone(a)
	}
	s.clock.AfterFunc(delay, finish)
	return a
}

// actionsWhere lists actions matching keep, oldest first. Call with s.mu held.
func (s *Server) actionsWhere(keep func(*action) bool) []actionJSON {
	out := []actionJSON{}
	for _, id := range s.actionOrder {
		if a := s.actions[id]; keep(a) {
			out = append(out, a.json())
		}
	}
	return out
}

// actionFromPath finds the action named by {action_id}, answering 404 itself. Call with s.mu held.
func (s *Server) actionFromPath(w http.ResponseWriter, r *http.Request) *action {
	id, err := strconv.Atoi(r.PathValue("action_id"))
	a := s.actions[id]
	if err != nil || a == nil {
		notFound(w)
		return nil
	}
	return a
}

func (s *Server) actionURL(r *http.Request, id int) string {
	u := url.URL{Scheme: scheme(r), Host: r.Host, Path: "/v2/actions/" + strconv.Itoa(id)}
	return u.String()
}

func (s *Server) listActions(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	list := s.actionsWhere(func(*action) bool { return true })
	s.mu.Unlock()
	writePage(w, r, "actions", list)
}

func (s *Server) getAction(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a := s.actionFromPath(w, r); a != nil {
		writeJSON(w, http.StatusOK, map[string]any{"action": a.json()})
	}
}
