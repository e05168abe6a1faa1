package demand_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"testing"
	"time"

	gitlab "gitlab.com/gitlab-org/api/client-go"

	"github.com/shoalci/shoal/internal/demand"
	"github.com/shoalci/shoal/internal/glemu"
)

// GitLab's jobs_index limit answers 429 with Retry-After: 60. With
// RetryPolicy client-go does not retry it, and the Source reads no job list
// until the minute has passed, its last reads standing in meanwhile.
func TestSnapshotWaitsOutGitLabsRateLimit(t *testing.T) {
	w := newWorldWith(t, glemu.Options{JobsPerMinute: 3})
	lists := jobLists{}
	// A custom policy replaces WithoutRetries: client-go retries as RetryPolicy says.
	c := w.clientBehind(t, func(_ http.ResponseWriter, r *http.Request) bool { lists.count(r); return false },
		gitlab.WithCustomRetry(demand.RetryPolicy))
	src, _ := demand.NewSource(c, demand.Config{Projects: []string{fmt.Sprint(w.web), fmt.Sprint(w.api)},
		CreatedEvery: time.Hour}, w.clk)
	ctx := context.Background()
	total := func() int { return lists[fmt.Sprint(w.web)] + lists[fmt.Sprint(w.api)] }
	w.pipeline(t, w.web, 1, time.Hour, "docker")

	// Pending of web and api, created of web: 3; created of api: 429.
	snap, err := src.Snapshot(ctx)
	if err != nil || len(snap.Pending) != 1 {
		t.Fatalf("pending %d, %v; want 1", len(snap.Pending), err)
	}
	if total() != 4 {
		t.Errorf("%d job lists, want 4: the 429 is not retried", total())
	}
	if len(problemsAbout(snap, "429", "09:01:00")) == 0 {
		t.Errorf("problems %q, want the rate limit until 09:01:00", snap.Problems)
	}
	for _, after := range []time.Duration{10 * time.Second, 49 * time.Second} {
		w.pipeline(t, w.web, 1, time.Hour, "docker")
		w.clk.Advance(after)
		snap, err := src.Snapshot(ctx)
		if err != nil || len(snap.Pending) != 1 || total() != 4 {
			t.Errorf("at %s: pending %d, %d job lists, %v; want the last read (1) and no request", w.clk.Since(start), len(snap.Pending), total(), err)
		}
	}
	w.clk.Advance(time.Second)
	snap, err = src.Snapshot(ctx)
	if err != nil || len(snap.Pending) != 3 || total() != 7 || len(snap.Problems) != 0 {
		t.Errorf("after Retry-After: pending %d, %d job lists, problems %q, %v; want 3, 7, none", len(snap.Pending), total(), snap.Problems, err)
	}
}

// Without Retry-After, GitLab's RateLimit-Reset (a Unix time) says when to read again.
func TestSnapshotHonoursRateLimitReset(t *testing.T) {
	w := newWorld(t)
	limited, lists := true, jobLists{}
	src := w.webSourceBehind(t, func(rw http.ResponseWriter, r *http.Request) bool {
		lists.count(r)
		if limited {
			limited = false
			rw.Header().Set("RateLimit-Reset", strconv.FormatInt(w.clk.Now().Add(30*time.Second).Unix(), 10))
			return fail(rw, http.StatusTooManyRequests)
		}
		return false
	})
	ctx := context.Background()
	if _, err := src.Snapshot(ctx); err == nil {
		t.Fatal("a 429 on the first read gave a snapshot: nothing was ever read")
	}
	w.clk.Advance(29 * time.Second)
	if _, err := src.Snapshot(ctx); err == nil || lists[fmt.Sprint(w.web)] != 1 {
		t.Errorf("before RateLimit-Reset: %d job lists, err %v; want no request, and an error", lists[fmt.Sprint(w.web)], err)
	}
	w.clk.Advance(time.Second)
	if _, err := src.Snapshot(ctx); err != nil || lists[fmt.Sprint(w.web)] != 3 {
		t.Errorf("at RateLimit-Reset: %d job lists, %v; want pending and created read", lists[fmt.Sprint(w.web)], err)
	}
}

// Over its budget of job lists, the Source reads the projects a Job Hook
// named first, then those read longest ago; the others keep their last read.
func TestSnapshotBudgetPrefersTouchedProjects(t *testing.T) {
	w := newWorld(t)
	docs, err := w.gl.AddProject("docs", w.acme)
	if err != nil {
		t.Fatal(err)
	}
	a, b, c := w.web, w.api, docs
	src, _ := demand.NewSource(w.client(t, token), demand.Config{Projects: []string{fmt.Sprint(a), fmt.Sprint(b), fmt.Sprint(c)},
		JobsPerMinute: 2, CreatedEvery: time.Hour}, w.clk)
	ctx := context.Background()
	look := func(want map[int64]int) demand.Snapshot {
		t.Helper()
		snap, err := src.Snapshot(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for p, n := range want {
			if got := pendingOf(snap, p); got != n {
				t.Errorf("at %s: project %d has %d pending jobs, want %d", w.clk.Since(start), p, got, n)
			}
		}
		return snap
	}
	for _, p := range []int64{a, b, c} {
		w.pipeline(t, p, 1, time.Hour, "docker")
	}
	// a and b fill the budget; c is left out, reported.
	snap := look(map[int64]int{a: 1, b: 1, c: 0})
	if len(problemsAbout(snap, fmt.Sprintf("project %d", c), "not read yet", "jobs_api_per_minute")) != 1 {
		t.Errorf("problems %q, want c left out over budget", snap.Problems)
	}
	for _, p := range []int64{a, b, c} {
		w.pipeline(t, p, 1, time.Hour, "docker")
	}
	w.clk.Advance(30 * time.Second)
	look(map[int64]int{a: 1, b: 1, c: 0}) // the budget is spent
	w.clk.Advance(30 * time.Second)
	// c, never read, then a (read as long ago as b, and first).
	if snap := look(map[int64]int{a: 2, b: 1, c: 2}); len(snap.Problems) != 0 {
		t.Errorf("problems %q, want none: b's read is a minute old", snap.Problems)
	}

	// A Job Hook names c (a and b get jobs without one).
	w.pipeline(t, a, 1, time.Hour, "docker")
	w.pipeline(t, b, 1, time.Hour, "docker")
	wh, _ := demand.NewWebhook("hook-secret", nil)
	wh.Watch(src.Touch)
	if err := w.gl.AddJobHook(glemu.HookConfig{Handler: wh, Secret: "hook-secret", Statuses: []string{glemu.StatusPending}}); err != nil {
		t.Fatal(err)
	}
	w.pipeline(t, c, 1, time.Hour, "docker")
	w.clk.Advance(time.Minute)
	// c, touched, then b, read longest ago; a waits.
	look(map[int64]int{a: 2, b: 3, c: 3})
}

func TestRetryPolicy(t *testing.T) {
	ctx := context.Background()
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	get, _ := http.NewRequest(http.MethodGet, "http://gitlab.example.com", nil)
	tests := []struct {
		name  string
		ctx   context.Context
		code  int
		err   error
		retry bool
	}{
		{"429", ctx, http.StatusTooManyRequests, nil, false},
		{"502", ctx, http.StatusBadGateway, nil, true},
		{"501", ctx, http.StatusNotImplemented, nil, false},
		{"200", ctx, http.StatusOK, nil, false},
		{"404", ctx, http.StatusNotFound, nil, false},
		{"canceled", canceled, http.StatusBadGateway, nil, false},
		{"connection refused", ctx, 0, &url.Error{Op: "Get", URL: "http://gitlab.example.com", Err: errors.New("connect: connection refused")}, true},
		{"dial", ctx, 0, &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("no route to host")}, true},
		{"unknown error", ctx, 0, errors.New("unexpected EOF"), false},
		{"GET with a response", ctx, http.StatusBadGateway, errors.New("unexpected EOF"), true},
	}
	for _, tt := range tests {
		var resp *http.Response
		if tt.code != 0 {
			resp = &http.Response{StatusCode: tt.code, Request: get}
		}
		if retry, _ := demand.RetryPolicy(tt.ctx, resp, tt.err); retry != tt.retry {
			t.Errorf("%s: retry = %v, want %v", tt.name, retry, tt.retry)
		}
	}

	// Through client-go: a 502 is still retried.
	w := newWorld(t)
	failures := 1
	c := w.clientBehind(t, func(rw http.ResponseWriter, r *http.Request) bool {
		if failures > 0 {
			failures--
			return fail(rw, http.StatusBadGateway)
		}
		return false
	}, gitlab.WithCustomRetry(demand.RetryPolicy), gitlab.WithCustomRetryMax(1))
	if _, _, err := c.Projects.GetProject(w.web, nil); err != nil {
		t.Errorf("a 502, then 200: %v; want the retry to succeed", err)
	}
}
