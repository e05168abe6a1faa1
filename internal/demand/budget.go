package demand

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	retryablehttp "github.com/hashicorp/go-retryablehttp"
	gitlab "gitlab.com/gitlab-org/api/client-go"
)

// readPending returns the pending jobs of the watched projects: read fresh
// where the budget of job-list requests and GitLab's rate limit allow (the
// projects a Job Hook named first, then those read longest ago), the last
// read elsewhere. See Snapshot for what a failed read does.
func (s *Source) readPending(ctx context.Context, ids []int64, now time.Time, problems *[]string) ([]PendingJob, error) {
	s.mu.Lock()
	touched := s.touched
	s.touched = map[int64]bool{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.watched = map[int64]bool{}
		for _, pid := range ids {
			if st := s.state[pid]; st != nil && st.refusal == nil {
				s.watched[pid] = true
			}
		}
		for pid := range touched { // not read: still first in line
			if s.watched[pid] {
				s.touched[pid] = true
			}
		}
	}()

	watched := make(map[int64]bool, len(ids))
	for _, pid := range ids {
		watched[pid] = true
		if s.state[pid] == nil {
			s.state[pid] = &projectState{}
		}
	}
	for pid := range s.state {
		if !watched[pid] {
			delete(s.state, pid)
			delete(s.names, pid)
		}
	}
	var order []int64
	for _, pid := range ids {
		st := s.state[pid]
		st.err = nil
		if st.refusal != nil && now.Sub(st.refusedAt) < s.cfg.GroupRefresh {
			continue // refused: asked again after GroupRefresh, not on every poll
		}
		st.refusal = nil
		order = append(order, pid)
	}
	slices.SortStableFunc(order, func(a, b int64) int {
		if touched[a] != touched[b] {
			if touched[a] {
				return -1
			}
			return 1
		}
		return s.state[a].readAt.Compare(s.state[b].readAt)
	})
	for _, pid := range order {
		if !s.mayListJobs() {
			break
		}
		st := s.state[pid]
		jobs, err := s.pending(ctx, pid, now)
		switch {
		case err == nil:
			st.pending, st.readAt = jobs, now
			delete(touched, pid)
		case ctx.Err() != nil:
			return nil, err
		case unauthorized(err):
			return nil, err // the token: every other read fails the same way
		case refused(err):
			st.refusal, st.refusedAt = err, now
			st.pending, st.readAt, st.createdAt = nil, time.Time{}, time.Time{}
		default:
			s.noteRateLimit(err)
			st.err = err
		}
	}

	var out []PendingJob
	var failure error // the first, for when no project could be read
	read := 0
	// Problems name times of day, not ages, so that one that lasts reads the
	// same at every poll (and is logged once).
	for _, pid := range ids {
		st := s.state[pid]
		// A read too old to stand for the queue (its jobs have most likely
		// started or ended: counting them would keep Droplets for ghosts)
		// stands in for nothing.
		tooOld := !st.readAt.IsZero() && now.Sub(st.readAt) >= staleLimit
		at := st.readAt.UTC().Format(time.TimeOnly)
		switch {
		case st.refusal != nil:
			failure = cmp.Or(failure, st.refusal)
			*problems = append(*problems, s.refusedProblem(pid, st.refusal, st.refusedAt.Add(s.cfg.GroupRefresh)))
			continue
		case st.err != nil && st.readAt.IsZero():
			failure = cmp.Or(failure, st.err)
			*problems = append(*problems, fmt.Sprintf("%v: %s is left out, never read; %s", st.err, s.name(pid), s.retryNote()))
		case tooOld:
			failure = cmp.Or(failure, cmp.Or(st.err, fmt.Errorf("%s: pending jobs last read at %s", s.name(pid), at)))
			*problems = append(*problems, fmt.Sprintf("%s is left out: its pending jobs were last read at %s, over %s ago (%s); %s",
				s.name(pid), at, staleLimit, cmp.Or(errText(st.err), s.heldBack()), s.retryNote()))
			continue
		case st.err != nil:
			*problems = append(*problems, fmt.Sprintf("%v: %s's pending jobs as read at %s stand in; %s",
				st.err, s.name(pid), at, s.retryNote()))
		case st.readAt.IsZero():
			failure = cmp.Or(failure, fmt.Errorf("%s: pending jobs not read yet: %s", s.name(pid), s.heldBack()))
			*problems = append(*problems, fmt.Sprintf("%s is left out, not read yet: %s", s.name(pid), s.heldBack()))
		case now.Sub(st.readAt) >= staleAfter:
			*problems = append(*problems, fmt.Sprintf("%s's pending jobs were last read at %s: %s", s.name(pid), at, s.heldBack()))
		}
		if !st.readAt.IsZero() {
			read++
			out = append(out, st.pending...)
		}
	}
	if read == 0 && len(ids) > 0 {
		if len(ids) == 1 {
			return nil, failure
		}
		return nil, fmt.Errorf("none of %d projects' pending jobs could be read, first: %w", len(ids), failure)
	}
	return out, nil
}

// rateLimitProblem reports GitLab's 429 while it holds job lists back.
func (s *Source) rateLimitProblem(problems *[]string) {
	if s.clk.Now().Before(s.blockedUntil) {
		*problems = append(*problems, fmt.Sprintf("GitLab rate-limits job lists (429): none is read before %s, "+
			"the last reads stand in meanwhile; lower [gitlab] jobs_api_per_minute, or have GitLab's admin raise project_jobs_api_rate_limit",
			s.blockedUntil.UTC().Format(time.TimeOnly)))
	}
}

// retryNote says when a failed read is tried again.
func (s *Source) retryNote() string {
	if s.clk.Now().Before(s.blockedUntil) {
		return "trying again after " + s.blockedUntil.UTC().Format(time.TimeOnly) + ", when GitLab's rate limit allows"
	}
	return "trying again at the next poll"
}

// heldBack says why job lists are not read, and what to do.
func (s *Source) heldBack() string {
	if s.clk.Now().Before(s.blockedUntil) {
		return "GitLab rate-limits job lists until " + s.blockedUntil.UTC().Format(time.TimeOnly)
	}
	return fmt.Sprintf("the budget of %d job-list requests a minute ([gitlab] jobs_api_per_minute) is spent; "+
		"raise it (GitLab allows 600 by default) or watch fewer projects", s.cfg.JobsPerMinute)
}

func (s *Source) refusedProblem(pid int64, err error, retryAt time.Time) string {
	what := "GitLab refuses its job list (403): turn CI/CD on in its settings or give the token's user at least Reporter access there, or stop watching it"
	if errors.Is(err, gitlab.ErrNotFound) {
		what = "GitLab does not find it (404): it was deleted or moved, or the token's user cannot see it; fix the configuration"
	}
	return fmt.Sprintf("%s is left out: %s; asking again at %s", s.name(pid), what, retryAt.UTC().Format(time.TimeOnly))
}

// errText is err's text, or "" for none.
func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// name is how Problems name a project: by path when known.
func (s *Source) name(pid int64) string {
	if n := s.names[pid]; n != "" {
		return fmt.Sprintf("project %s (ID %d)", n, pid)
	}
	return fmt.Sprintf("project %d", pid)
}

// unauthorized: GitLab refuses the token itself (revoked, expired).
func unauthorized(err error) bool { return gitlab.HasStatusCode(err, http.StatusUnauthorized) }

// refused reports whether GitLab refuses the project's job list for good:
// 403 (CI/CD turned off, Guest access) or 404 (deleted, moved, hidden).
func refused(err error) bool {
	return errors.Is(err, gitlab.ErrNotFound) || gitlab.HasStatusCode(err, http.StatusForbidden)
}

// mayListJobs reports whether a job list may be requested now: GitLab has
// not said to wait, and the last minute's requests are within JobsPerMinute.
func (s *Source) mayListJobs() bool {
	now := s.clk.Now()
	if now.Before(s.blockedUntil) {
		return false
	}
	i := 0
	for i < len(s.jobLists) && !s.jobLists[i].After(now.Add(-time.Minute)) {
		i++
	}
	s.jobLists = s.jobLists[i:]
	return s.cfg.JobsPerMinute < 0 || len(s.jobLists) < s.cfg.JobsPerMinute
}

// countJobList counts each request it is given (each page of a list)
// against JobsPerMinute.
func (s *Source) countJobList() gitlab.RequestOptionFunc {
	return func(*retryablehttp.Request) error {
		s.jobLists = append(s.jobLists, s.clk.Now())
		return nil
	}
}

// noteRateLimit reports whether err is GitLab's 429 and then holds job lists
// back until Retry-After has passed (or RateLimit-Reset; a minute with
// neither). GitLab's jobs_index limit sends Retry-After: 60 alone.
func (s *Source) noteRateLimit(err error) bool {
	var er *gitlab.ErrorResponse
	if !errors.As(err, &er) || er.Response == nil || er.Response.StatusCode != http.StatusTooManyRequests {
		return false
	}
	now := s.clk.Now()
	until := now.Add(time.Minute)
	h := er.Response.Header
	if v := h.Get("Retry-After"); v != "" {
		if secs, err := strconv.Atoi(v); err == nil {
			until = now.Add(time.Duration(secs) * time.Second)
		} else if t, err := http.ParseTime(v); err == nil {
			until = t
		}
	} else if v := h.Get("RateLimit-Reset"); v != "" {
		if unix, err := strconv.ParseInt(v, 10, 64); err == nil {
			until = time.Unix(unix, 0)
		}
	}
	if until.After(s.blockedUntil) {
		s.blockedUntil = until
	}
	return true
}

// RetryPolicy is client-go's retry policy (as of v1.46.0) except that a 429
// is not retried: client-go retries it 5 times within seconds, each retry
// counted against GitLab's limit, where GitLab asks for a minute
// (Retry-After) and Source waits it out itself, its last reads standing in.
// 5xx answers and connection errors are retried as before. Give it to
// gitlab.NewClient with gitlab.WithCustomRetry(demand.RetryPolicy).
func RetryPolicy(ctx context.Context, resp *http.Response, err error) (bool, error) {
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	if err != nil {
		return retryableError(resp, err)
	}
	if resp.StatusCode == http.StatusTooManyRequests {
		return false, nil
	}
	return resp.StatusCode == 0 || resp.StatusCode >= 500 && resp.StatusCode != http.StatusNotImplemented, nil
}

// retryableError is client-go's choice: retry only errors known to happen
// before a request reached GitLab (or any error of a GET with a response).
func retryableError(resp *http.Response, err error) (bool, error) {
	if resp != nil && resp.Request != nil {
		switch resp.Request.Method {
		case http.MethodConnect, http.MethodOptions, http.MethodTrace, http.MethodHead, http.MethodGet:
			return true, nil
		}
	}
	var dnsErr *net.DNSError
	var opErr *net.OpError
	var urlErr *url.Error
	switch {
	case errors.As(err, &dnsErr):
		if dnsErr.IsNotFound {
			return false, err
		}
		return true, nil
	case errors.As(err, &opErr):
		return opErr.Temporary() || strings.EqualFold(opErr.Op, "dial"), nil
	case errors.As(err, &urlErr):
		return strings.Contains(urlErr.Error(), "connection refused"), nil
	}
	return strings.Contains(err.Error(), "net/http: TLS handshake timeout"), nil
}
