package glemu

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"
)

// HookConfig registers a receiver of Job Hook webhooks, as a project or group
// webhook with "Job events" ticked does in GitLab.
type HookConfig struct {
	// Handler receives the hooks in-process, synchronously and in order: what
	// a simulator wants. Exactly one of Handler and URL is set.
	Handler http.Handler
	// URL receives the hooks by HTTP POST, asynchronously and in order, as
	// GitLab's Sidekiq workers send them.
	URL string
	// Secret is sent in X-Gitlab-Token.
	Secret string
	// Statuses limits the hooks to these build_status values; empty means all.
	Statuses []string
	// Client sends URL hooks. Default: a client with a 10 s timeout.
	Client *http.Client
}

type hook struct {
	cfg HookConfig
	log *slog.Logger
	// URL delivery queue, drained by one goroutine.
	mu     sync.Mutex
	cond   *sync.Cond
	queue  [][]byte
	closed bool
	done   chan struct{}
}

// AddJobHook registers a Job Hook receiver. Close removes all receivers.
func (s *Server) AddJobHook(cfg HookConfig) error {
	if (cfg.Handler == nil) == (cfg.URL == "") {
		return fmt.Errorf("job hook: set exactly one of Handler and URL")
	}
	h := &hook{cfg: cfg, log: s.log}
	if cfg.URL != "" {
		if h.cfg.Client == nil {
			h.cfg.Client = &http.Client{Timeout: 10 * time.Second}
		}
		h.cond = sync.NewCond(&h.mu)
		h.done = make(chan struct{})
		go h.run()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hooks = append(s.hooks, h)
	return nil
}

// Close stops delivering webhooks and waits for URL deliveries in flight;
// queued ones are dropped.
func (s *Server) Close() {
	s.mu.Lock()
	hooks := s.hooks
	s.hooks = nil
	s.mu.Unlock()
	for _, h := range hooks {
		if h.done == nil {
			continue
		}
		h.mu.Lock()
		h.closed = true
		h.cond.Broadcast()
		h.mu.Unlock()
		<-h.done
	}
}

func (h *hook) send(ev Event) {
	if len(h.cfg.Statuses) > 0 && !slices.Contains(h.cfg.Statuses, ev.Job.Status) {
		return
	}
	body, err := json.Marshal(jobHookPayload(ev))
	if err != nil { // cannot happen with these types; say so if it does
		h.log.Error("glemu: encode job hook", "err", err)
		return
	}
	if h.cfg.Handler != nil {
		req := &http.Request{
			Method: http.MethodPost, URL: &url.URL{Path: "/"}, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
			Header: make(http.Header, 4), Body: io.NopCloser(bytes.NewReader(body)), ContentLength: int64(len(body)),
			Host: "glemu", RemoteAddr: "127.0.0.1:0",
		}
		h.header(req)
		h.cfg.Handler.ServeHTTP(discard{header: http.Header{}}, req.WithContext(context.Background()))
		return
	}
	h.mu.Lock()
	if !h.closed {
		h.queue = append(h.queue, body)
		h.cond.Signal()
	}
	h.mu.Unlock()
}

func (h *hook) header(req *http.Request) {
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "GitLab/18.6.0")
	req.Header.Set("X-Gitlab-Event", "Job Hook")
	if h.cfg.Secret != "" {
		req.Header.Set("X-Gitlab-Token", h.cfg.Secret)
	}
}

func (h *hook) run() {
	defer close(h.done)
	for {
		h.mu.Lock()
		for len(h.queue) == 0 && !h.closed {
			h.cond.Wait()
		}
		if h.closed {
			h.mu.Unlock()
			return
		}
		body := h.queue[0]
		h.queue = h.queue[1:]
		h.mu.Unlock()

		req, err := http.NewRequest(http.MethodPost, h.cfg.URL, bytes.NewReader(body))
		if err != nil {
			h.log.Error("glemu: job hook request", "url", h.cfg.URL, "err", err)
			continue
		}
		h.header(req)
		resp, err := h.cfg.Client.Do(req)
		if err != nil {
			h.log.Warn("glemu: job hook delivery failed", "url", h.cfg.URL, "err", err)
			continue
		}
		resp.Body.Close()
		if resp.StatusCode >= 300 {
			h.log.Warn("glemu: job hook refused", "url", h.cfg.URL, "status", resp.StatusCode)
		}
	}
}

// jobHook is the body of a Job Hook, with the fields GitLab sends
// (doc/user/project/integrations/webhook_events.md#job-events).
type jobHook struct {
	ObjectKind          string         `json:"object_kind"`
	Ref                 string         `json:"ref"`
	Tag                 bool           `json:"tag"`
	BeforeSHA           string         `json:"before_sha"`
	SHA                 string         `json:"sha"`
	RetriesCount        int            `json:"retries_count"`
	BuildID             int64          `json:"build_id"`
	BuildName           string         `json:"build_name"`
	BuildStage          string         `json:"build_stage"`
	BuildStatus         string         `json:"build_status"`
	BuildCreatedAt      *string        `json:"build_created_at"`
	BuildStartedAt      *string        `json:"build_started_at"`
	BuildFinishedAt     *string        `json:"build_finished_at"`
	BuildCreatedAtISO   *string        `json:"build_created_at_iso"`
	BuildStartedAtISO   *string        `json:"build_started_at_iso"`
	BuildFinishedAtISO  *string        `json:"build_finished_at_iso"`
	BuildDuration       *float64       `json:"build_duration"`
	BuildQueuedDuration *float64       `json:"build_queued_duration"`
	BuildAllowFailure   bool           `json:"build_allow_failure"`
	BuildFailureReason  string         `json:"build_failure_reason"`
	PipelineID          int64          `json:"pipeline_id"`
	Tags                []string       `json:"tags"`
	Runner              *jobHookRunner `json:"runner"`
	ProjectID           int64          `json:"project_id"`
	ProjectName         string         `json:"project_name"`
	User                apiUser        `json:"user"`
	Commit              jobHookCommit  `json:"commit"`
	Environment         *struct{}      `json:"environment"`
}

type jobHookRunner struct {
	ID          int64    `json:"id"`
	Description string   `json:"description"`
	RunnerType  string   `json:"runner_type"`
	Active      bool     `json:"active"`
	IsShared    bool     `json:"is_shared"`
	Tags        []string `json:"tags"`
}

type jobHookCommit struct {
	ID          int64    `json:"id"` // the pipeline ID, as GitLab sends it
	Name        *string  `json:"name"`
	SHA         string   `json:"sha"`
	Message     string   `json:"message"`
	AuthorName  string   `json:"author_name"`
	AuthorEmail string   `json:"author_email"`
	AuthorURL   string   `json:"author_url"`
	Status      string   `json:"status"`
	Duration    *float64 `json:"duration"`
	StartedAt   *string  `json:"started_at"`
	FinishedAt  *string  `json:"finished_at"`
}

// hookTime is how Job Hooks write times: "2021-02-23 02:41:37 UTC", or null.
// (Strings rather than a json.Marshaler: a week of hooks is encoded per replay.)
func hookTime(t time.Time) *string {
	if t.IsZero() {
		return nil
	}
	s := t.UTC().Format("2006-01-02 15:04:05 UTC")
	return &s
}

// isoTime is the _iso variant: "2021-02-23T02:41:37.886Z", or null.
func isoTime(t time.Time) *string {
	if t.IsZero() {
		return nil
	}
	s := t.UTC().Format("2006-01-02T15:04:05.000Z")
	return &s
}

func jobHookPayload(ev Event) jobHook {
	j := ev.Job
	sha := fakeSHA(j.PipelineID)
	p := jobHook{
		ObjectKind:         "build",
		Ref:                "main",
		BeforeSHA:          sha,
		SHA:                sha,
		BuildID:            j.ID,
		BuildName:          j.Name,
		BuildStage:         j.StageName,
		BuildStatus:        j.Status,
		BuildCreatedAt:     hookTime(j.CreatedAt),
		BuildStartedAt:     hookTime(j.StartedAt),
		BuildFinishedAt:    hookTime(j.FinishedAt),
		BuildCreatedAtISO:  isoTime(j.CreatedAt),
		BuildStartedAtISO:  isoTime(j.StartedAt),
		BuildFinishedAtISO: isoTime(j.FinishedAt),
		BuildFailureReason: j.FailureReason,
		PipelineID:         j.PipelineID,
		Tags:               nonNil(j.Tags),
		ProjectID:          j.ProjectID,
		ProjectName:        j.Project,
		User:               rootUser,
		Commit: jobHookCommit{
			ID: j.PipelineID, SHA: sha, Message: "Update .gitlab-ci.yml\n",
			AuthorName: rootUser.Name, AuthorEmail: "admin@example.com", Status: j.Status,
		},
	}
	if !j.QueuedAt.IsZero() {
		end := ev.Time
		if !j.StartedAt.IsZero() {
			end = j.StartedAt
		}
		p.BuildQueuedDuration = seconds(end.Sub(j.QueuedAt))
	}
	if !j.StartedAt.IsZero() {
		end := ev.Time
		if !j.FinishedAt.IsZero() {
			end = j.FinishedAt
		}
		p.BuildDuration = seconds(end.Sub(j.StartedAt))
	}
	if j.FailureReason == "" {
		p.BuildFailureReason = "unknown_failure" // what GitLab sends for a job that has not failed
	}
	if j.RunnerID != 0 {
		p.Runner = &jobHookRunner{ID: j.RunnerID, Description: j.RunnerName, RunnerType: "instance_type",
			Active: true, IsShared: true, Tags: nonNil(j.RunnerTags)}
	}
	return p
}

// discard is the ResponseWriter for in-process hooks: GitLab ignores the answer.
type discard struct{ header http.Header }

func (d discard) Header() http.Header         { return d.header }
func (d discard) Write(b []byte) (int, error) { return len(b), nil }
func (d discard) WriteHeader(int)             {}

func seconds(d time.Duration) *float64 {
	f := d.Seconds()
	return &f
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
