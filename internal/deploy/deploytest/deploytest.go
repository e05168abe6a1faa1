// Package deploytest sets up what shoal's deploy tests run against: the local
// Docker Engine as a single-node Swarm, a real OCI registry on loopback (the
// distribution library, in-process), images built FROM scratch by the test
// itself, and a load generator. Nothing is pulled from the internet.
package deploytest

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/handlers"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/inmemory" // registry storage for tests
	"github.com/moby/moby/api/types/swarm"
	"github.com/moby/moby/client"
	"github.com/sirupsen/logrus"
)

// Socket is the local Docker Engine.
const Socket = "/var/run/docker.sock"

// RequireDocker skips without a Docker Engine, or fails in CI (CI=true), where it must exist.
func RequireDocker(t testing.TB) {
	t.Helper()
	if _, err := os.Stat(Socket); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("Docker Engine socket %s missing in CI: %v", Socket, err)
		}
		t.Skipf("needs the Docker Engine at %s: %v", Socket, err)
	}
}

// LocalDocker is a client for the local engine, for the tests' own setup and checks.
func LocalDocker(t testing.TB) *client.Client {
	t.Helper()
	RequireDocker(t)
	cli, err := client.New(client.WithHost("unix://" + Socket))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// EnsureSwarm makes the local engine a single-node Swarm manager unless it is one.
// It leaves the Swarm in place: other tests on the machine may use it.
func EnsureSwarm(t testing.TB, cli *client.Client) {
	t.Helper()
	ctx := context.Background()
	info, err := cli.Info(ctx, client.InfoOptions{})
	if err != nil {
		t.Fatalf("docker info: %v", err)
	}
	if info.Info.Swarm.LocalNodeState == swarm.LocalNodeStateActive {
		if !info.Info.Swarm.ControlAvailable {
			t.Fatal("the local engine is a Swarm worker, not a manager: tests need a manager")
		}
		return
	}
	_, err = cli.SwarmInit(ctx, client.SwarmInitOptions{ListenAddr: "127.0.0.1:2377", AdvertiseAddr: "127.0.0.1"})
	if err != nil && !strings.Contains(err.Error(), "already part of a swarm") {
		t.Fatalf("docker swarm init: %v", err)
	}
}

// StartRegistry serves an in-memory OCI registry on 127.0.0.1 and returns host:port.
// Docker treats registries on 127.0.0.0/8 as insecure (plain HTTP) by default.
func StartRegistry(t testing.TB) string {
	t.Helper()
	cfg := &configuration.Configuration{
		Storage: configuration.Storage{"inmemory": configuration.Parameters{}},
	}
	cfg.Log.AccessLog.Disabled = true
	cfg.HTTP.Secret = "shoal-test-registry"
	// The registry logs every request through logrus, and the blob probes of
	// every push as errors: none of it is news to a test.
	logrus.SetLevel(logrus.FatalLevel)
	ctx, cancel := context.WithCancel(context.Background())
	app := handlers.NewApp(ctx, cfg)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: app, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(l)
	t.Cleanup(func() {
		srv.Close()
		cancel()
	})
	return l.Addr().String()
}

var (
	appOnce sync.Once
	appBin  []byte
	appErr  error
)

// AppBinary builds testdata/app statically (CGO_ENABLED=0) once per test binary.
func AppBinary(t testing.TB) []byte {
	t.Helper()
	appOnce.Do(func() {
		_, self, _, _ := runtime.Caller(0)
		src := filepath.Join(filepath.Dir(self), "testdata", "app")
		dir, err := os.MkdirTemp("", "shoal-app-")
		if err != nil {
			appErr = err
			return
		}
		defer os.RemoveAll(dir)
		out := filepath.Join(dir, "app")
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, ".")
		cmd.Dir = src
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
		if b, err := cmd.CombinedOutput(); err != nil {
			appErr = fmt.Errorf("build test app: %v\n%s", err, b)
			return
		}
		appBin, appErr = os.ReadFile(out)
	})
	if appErr != nil {
		t.Fatal(appErr)
	}
	return appBin
}

// BuildAndPush builds the test app image FROM scratch with env baked in, tags it
// ref (registry/repo:tag) and pushes it to the registry.
func BuildAndPush(t testing.TB, cli *client.Client, ref string, env map[string]string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var df strings.Builder
	df.WriteString("FROM scratch\nCOPY app /app\n")
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&df, "ENV %s=%q\n", k, env[k])
	}
	df.WriteString("ENTRYPOINT [\"/app\"]\n")

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range []struct {
		name string
		mode int64
		data []byte
	}{{"Dockerfile", 0o644, []byte(df.String())}, {"app", 0o755, AppBinary(t)}} {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.data))}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(f.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	res, err := cli.ImageBuild(ctx, &buf, client.ImageBuildOptions{Tags: []string{ref}, Remove: true, ForceRemove: true})
	// The tag names a registry that dies with the test: untag it so runs don't pile up.
	t.Cleanup(func() {
		_, _ = cli.ImageRemove(context.Background(), ref, client.ImageRemoveOptions{Force: true})
	})
	if err != nil {
		t.Fatalf("build %s: %v", ref, err)
	}
	if err := jsonStreamErr(res.Body); err != nil {
		t.Fatalf("build %s: %v", ref, err)
	}
	push, err := cli.ImagePush(ctx, ref, client.ImagePushOptions{RegistryAuth: "e30="}) // "{}": no credentials
	if err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	if err := jsonStreamErr(push); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
}

// jsonStreamErr reads a build/push progress stream to the end and returns its error, if any.
func jsonStreamErr(r io.ReadCloser) error {
	defer r.Close()
	dec := json.NewDecoder(r)
	for {
		var m struct {
			Error       string `json:"error"`
			ErrorDetail struct {
				Message string `json:"message"`
			} `json:"errorDetail"`
		}
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if m.Error != "" {
			return errors.New(m.Error)
		}
	}
}

// FreePort returns a TCP port free on this host right now.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// RemoveStack deletes every service, network, config and secret labelled with the
// stack's namespace, plus shoal's lock, and waits for the networks to go.
func RemoveStack(t testing.TB, cli *client.Client, stack string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	f := make(client.Filters).Add("label", "com.docker.stack.namespace="+stack)
	if svcs, err := cli.ServiceList(ctx, client.ServiceListOptions{Filters: f}); err == nil {
		for _, s := range svcs.Items {
			_, _ = cli.ServiceRemove(ctx, s.ID, client.ServiceRemoveOptions{})
		}
	}
	// Running containers hold their networks: they must stop before the networks can go.
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(300 * time.Millisecond) {
		cs, err := cli.ContainerList(ctx, client.ContainerListOptions{Filters: f})
		if err != nil || len(cs.Items) == 0 {
			break
		}
	}
	if cfgs, err := cli.ConfigList(ctx, client.ConfigListOptions{}); err == nil {
		for _, c := range cfgs.Items {
			if c.Spec.Labels["com.docker.stack.namespace"] == stack || c.Spec.Name == "shoal-lock-"+stack {
				_, _ = cli.ConfigRemove(ctx, c.ID, client.ConfigRemoveOptions{})
			}
		}
	}
	if secs, err := cli.SecretList(ctx, client.SecretListOptions{Filters: f}); err == nil {
		for _, s := range secs.Items {
			_, _ = cli.SecretRemove(ctx, s.ID, client.SecretRemoveOptions{})
		}
	}
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		nets, err := cli.NetworkList(ctx, client.NetworkListOptions{Filters: f})
		if err != nil || len(nets.Items) == 0 {
			return
		}
		for _, n := range nets.Items {
			_, _ = cli.NetworkRemove(ctx, n.ID, client.NetworkRemoveOptions{})
		}
	}
}

// Load sends GET requests at a fixed rate and counts failures.
type Load struct {
	url    string
	stop   chan struct{}
	done   chan struct{}
	mu     sync.Mutex
	ok     int
	failed int
	errs   []string
	seen   map[string]int
}

// StartLoad sends rate requests per second to url until Stop. Each request uses a
// new connection, so every one goes through the Swarm load balancer afresh.
func StartLoad(url string, rate int) *Load {
	l := &Load{url: url, stop: make(chan struct{}), done: make(chan struct{}), seen: map[string]int{}}
	c := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	go func() {
		defer close(l.done)
		tick := time.NewTicker(time.Second / time.Duration(rate))
		defer tick.Stop()
		var wg sync.WaitGroup
		defer wg.Wait()
		for {
			select {
			case <-l.stop:
				return
			case <-tick.C:
				wg.Add(1)
				go func() {
					defer wg.Done()
					l.one(c)
				}()
			}
		}
	}()
	return l
}

func (l *Load) one(c *http.Client) {
	resp, err := c.Get(l.url)
	var body []byte
	if err == nil {
		body, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("status %s: %s", resp.Status, strings.TrimSpace(string(body)))
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		l.failed++
		if len(l.errs) < 10 {
			l.errs = append(l.errs, fmt.Sprintf("%s: %v", time.Now().Format("15:04:05.000"), err))
		}
		return
	}
	l.ok++
	l.seen[strings.TrimSpace(string(body))]++
}

// LoadResult is what the load generator saw.
type LoadResult struct {
	OK, Failed int
	Errors     []string       // the first few failures
	Seen       map[string]int // response bodies ("version=v2") and their counts
}

// Stop ends the load and reports.
func (l *Load) Stop() LoadResult {
	close(l.stop)
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	return LoadResult{OK: l.ok, Failed: l.failed, Errors: l.errs, Seen: l.seen}
}

// WaitServing polls url until it answers 200 with body want (trimmed), or fails the test.
func WaitServing(t testing.TB, url, want string, timeout time.Duration) {
	t.Helper()
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	var last string
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		resp, err := c.Get(url)
		if err != nil {
			last = err.Error()
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		last = strings.TrimSpace(string(b))
		if resp.StatusCode == http.StatusOK && last == want {
			return
		}
	}
	t.Fatalf("%s did not answer %q within %s; last answer: %s", url, want, timeout, last)
}
