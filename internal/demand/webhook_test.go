package demand_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/shoalci/shoal/internal/demand"
	"github.com/shoalci/shoal/internal/glemu"
)

func hookRequest(method, event, tok, body string) *http.Request {
	r := httptest.NewRequest(method, "/hooks/gitlab", strings.NewReader(body))
	if event != "" {
		r.Header.Set("X-Gitlab-Event", event)
	}
	if tok != "" {
		r.Header.Set("X-Gitlab-Token", tok)
	}
	return r
}

func signalled(w *demand.Webhook) bool {
	select {
	case <-w.Pending():
		return true
	default:
		return false
	}
}

func TestWebhook(t *testing.T) {
	wh, err := demand.NewWebhook("s3cret", nil)
	if err != nil {
		t.Fatal(err)
	}
	pending := `{"object_kind":"build","build_id":7,"build_status":"pending","tags":["docker"]}`
	running := `{"object_kind":"build","build_id":7,"build_status":"running"}`
	tests := []struct {
		name               string
		method, event, tok string
		body               string
		code               int
		signal             bool
	}{
		{"pending job", "POST", "Job Hook", "s3cret", pending, 200, true},
		{"running job", "POST", "Job Hook", "s3cret", running, 200, false},
		{"wrong token", "POST", "Job Hook", "s3cret!", pending, 401, false},
		{"prefix of the token", "POST", "Job Hook", "s3cre", pending, 401, false},
		{"no token", "POST", "Job Hook", "", pending, 401, false},
		{"other event", "POST", "Pipeline Hook", "s3cret", `{"object_kind":"pipeline"}`, 200, false},
		{"bad body", "POST", "Job Hook", "s3cret", `{"build_id":`, 400, false},
		{"GET", "GET", "Job Hook", "s3cret", "", 405, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			wh.ServeHTTP(rec, hookRequest(tt.method, tt.event, tt.tok, tt.body))
			if rec.Code != tt.code {
				t.Errorf("status = %d, want %d", rec.Code, tt.code)
			}
			if got := signalled(wh); got != tt.signal {
				t.Errorf("signalled = %v, want %v", got, tt.signal)
			}
		})
	}
	st := wh.Stats()
	if st.Received != 2 || st.Rejected != 4 || st.Signalled != 1 {
		t.Errorf("stats = %+v, want 2 received, 4 rejected, 1 signalled", st)
	}
	if _, err := demand.NewWebhook("", nil); err == nil {
		t.Error("empty secret accepted")
	}
}

func TestWebhookCoalescesAndNeverBlocks(t *testing.T) {
	wh, _ := demand.NewWebhook("s3cret", nil)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 100 {
			rec := httptest.NewRecorder()
			wh.ServeHTTP(rec, hookRequest("POST", "Job Hook", "s3cret", `{"build_status":"pending"}`))
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("receiver blocked with nobody reading Pending()")
	}
	if !signalled(wh) {
		t.Fatal("no signal after 100 pending hooks")
	}
	if signalled(wh) {
		t.Error("100 pending hooks gave more than one waiting signal")
	}
}

// End to end: the emulator's Job Hooks wake the receiver when a pipeline starts.
func TestWebhookFromEmulator(t *testing.T) {
	w := newWorld(t)
	wh, _ := demand.NewWebhook("hook-secret", nil)
	if err := w.gl.AddJobHook(glemu.HookConfig{Handler: wh, Secret: "hook-secret"}); err != nil {
		t.Fatal(err)
	}
	if signalled(wh) {
		t.Fatal("signal before any job")
	}
	w.pipeline(t, w.web, 3, time.Minute, "docker")
	if !signalled(wh) {
		t.Fatal("no signal after a pipeline made jobs pending")
	}
	if st := wh.Stats(); st.Signalled != 3 || st.Received != 6 {
		t.Errorf("stats = %+v, want 6 hooks (3 created, 3 pending), 3 pending", st)
	}

	// Over HTTP, with the wrong secret, nothing gets through.
	srv := httptest.NewServer(wh)
	defer srv.Close()
	if err := w.gl.AddJobHook(glemu.HookConfig{URL: srv.URL, Secret: "guess"}); err != nil {
		t.Fatal(err)
	}
	w.pipeline(t, w.web, 1, time.Minute, "docker")
	deadline := time.Now().Add(10 * time.Second)
	for wh.Stats().Rejected < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if st := wh.Stats(); st.Rejected != 2 {
		t.Errorf("stats = %+v, want the 2 hooks with a wrong secret rejected", st)
	}
}

// With Watch(src.Touch), a pending job of a project the Source does not read
// (another group's, one merely shared) does not wake the autoscaler.
func TestWebhookIgnoresUnwatchedProjects(t *testing.T) {
	w := newWorld(t)
	other, err := w.gl.AddGroup("other", 0)
	if err != nil {
		t.Fatal(err)
	}
	lib, err := w.gl.AddProject("lib", other)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.gl.ShareProject(lib, w.acme); err != nil {
		t.Fatal(err)
	}
	src, _ := demand.NewSource(w.client(t, token), demand.Config{Groups: []string{"acme"}}, w.clk)
	if _, err := src.Snapshot(context.Background()); err != nil {
		t.Fatal(err)
	}
	wh, _ := demand.NewWebhook("hook-secret", nil)
	wh.Watch(src.Touch)
	if err := w.gl.AddJobHook(glemu.HookConfig{Handler: wh, Secret: "hook-secret", Statuses: []string{glemu.StatusPending}}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		project int64
		signal  bool
	}{
		{"watched", w.api, true},
		{"shared with the group", lib, false},
		{"watched again", w.web, true},
	}
	for _, tt := range tests {
		w.pipeline(t, tt.project, 2, time.Minute, "docker")
		if got := signalled(wh); got != tt.signal {
			t.Errorf("%s: signalled = %v, want %v", tt.name, got, tt.signal)
		}
	}
	if st := wh.Stats(); st.Received != 6 || st.Signalled != 4 || st.Ignored != 2 {
		t.Errorf("stats = %+v, want 6 received, 4 signalled, 2 ignored", st)
	}
}
