package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestExitCodes(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"version"}, exitOK, "shoal "},
		{[]string{"--help"}, exitOK, "emulate"},
		{[]string{"emulate", "--help"}, exitOK, "--boot-delay"},
		{[]string{"no-such-command"}, exitUsage, "unknown command"},
		{[]string{"version", "extra"}, exitUsage, "accepts 0 arg"},
		{[]string{"emulate", "--bogus"}, exitUsage, "unknown flag"},
		{[]string{"emulate", "--boot-delay", "soon"}, exitUsage, "--boot-delay"},
		{[]string{"emulate", "--billing", "weekly"}, exitUsage, "--billing"},
		{[]string{"emulate", "--listen", "256.0.0.1:1"}, exitFailure, "listen on"},
		{[]string{"emulate", "--seed-file", "/does/not/exist.json"}, exitFailure, "seed file"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var out bytes.Buffer
			code := run(context.Background(), tc.args, &out, &out)
			if code != tc.code || !strings.Contains(out.String(), tc.out) {
				t.Fatalf("exit %d, output:\n%s\nwant exit %d and %q", code, out.String(), tc.code, tc.out)
			}
		})
	}
}

// syncBuffer is written by the command's goroutine and read by the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestEmulatePrintsHowToConnectAndServes(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var out syncBuffer
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"emulate", "--listen", "127.0.0.1:0", "--gitlab"}, &out, &out) }()

	re := regexp.MustCompile(`export DIGITALOCEAN_ACCESS_TOKEN=(\S+)\n\s+export DIGITALOCEAN_API_URL=(\S+)`)
	var m []string
	for deadline := time.Now().Add(10 * time.Second); m == nil; {
		if time.Now().After(deadline) {
			t.Fatalf("no connection instructions printed:\n%s", out.String())
		}
		time.Sleep(10 * time.Millisecond)
		m = re.FindStringSubmatch(out.String())
	}
	token, url := m[1], m[2]
	if !strings.HasPrefix(token, "dop_v1_") || len(token) < 40 {
		t.Fatalf("generated token %q", token)
	}
	req, _ := http.NewRequest("GET", url+"/v2/account", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"droplet_limit"`) {
		t.Fatalf("GET /v2/account: %d %s", resp.StatusCode, body)
	}

	gm := regexp.MustCompile(`export GITLAB_TOKEN=(\S+)`).FindStringSubmatch(out.String())
	if gm == nil {
		t.Fatalf("no GitLab token printed:\n%s", out.String())
	}
	req, _ = http.NewRequest("GET", url+"/api/v4/projects/1", nil)
	req.Header.Set("PRIVATE-TOKEN", gm[1])
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"app"`) {
		t.Fatalf("GET /api/v4/projects/1: %d %s", resp.StatusCode, body)
	}
	cancel()
	if code := <-done; code != exitOK {
		t.Fatalf("emulate exited %d after interrupt:\n%s", code, out.String())
	}
}
