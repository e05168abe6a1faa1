package deploy_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/shoalci/shoal/internal/deploy"
	"github.com/shoalci/shoal/internal/deploy/deploytest"
	"github.com/shoalci/shoal/internal/deploy/stack"
	"github.com/shoalci/shoal/internal/sshdocker"
	"github.com/shoalci/shoal/internal/sshdocker/sshdtest"
)

// testEnv is a single-node Swarm on the local engine, reached through a real sshd,
// with the test app's images in a loopback registry.
type testEnv struct {
	t      *testing.T
	local  *client.Client // direct, for the test's own checks
	remote *client.Client // through SSH, for shoal
	reg    string
	port   int
	stack  string
	out    *lineLog
}

// lineLog sends progress lines to the test log, and keeps them for assertions.
type lineLog struct {
	t     *testing.T
	mu    sync.Mutex
	lines []string
	part  string
}

func (l *lineLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.part += string(p)
	for {
		i := strings.IndexByte(l.part, '\n')
		if i < 0 {
			break
		}
		line := l.part[:i]
		l.part = l.part[i+1:]
		l.lines = append(l.lines, line)
		l.t.Log(line)
	}
	return len(p), nil
}

func (l *lineLog) reset() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := strings.Join(l.lines, "\n")
	l.lines = nil
	return s
}

func setup(t *testing.T, stackName string) *testEnv {
	t.Helper()
	local := deploytest.LocalDocker(t)
	deploytest.EnsureSwarm(t, local)
	e := &testEnv{t: t, local: local, reg: deploytest.StartRegistry(t), port: deploytest.FreePort(t), stack: stackName, out: &lineLog{t: t}}
	deploytest.RemoveStack(t, local, stackName)
	t.Cleanup(func() { deploytest.RemoveStack(t, local, stackName) })

	srv := sshdtest.Start(t)
	conn, err := sshdocker.Dial(context.Background(), sshdocker.Config{Host: srv.Host, IdentityFile: srv.IdentityFile, KnownHostsFile: srv.KnownHostsFile})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if e.remote, err = conn.Docker(); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *testEnv) image(tag string, env map[string]string) {
	e.t.Helper()
	if env == nil {
		env = map[string]string{}
	}
	env["APP_VERSION"] = tag
	deploytest.BuildAndPush(e.t, e.local, e.reg+"/app:"+tag, env)
}

func (e *testEnv) deployer(performer string) *deploy.Deployer {
	return &deploy.Deployer{
		Docker:       e.remote,
		Progress:     deploy.NewProgress(e.out),
		Host:         "test-manager",
		Performer:    performer,
		PollInterval: 250 * time.Millisecond,
	}
}

func (e *testEnv) load(tag string) *stack.Stack {
	e.t.Helper()
	st, err := stack.Load(context.Background(), stack.Options{
		Files:    []string{"testdata/stack.yml"},
		Name:     e.stack,
		Env:      []string{"REGISTRY=" + e.reg, fmt.Sprintf("WEB_PORT=%d", e.port)},
		ImageTag: tag,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return st
}

func (e *testEnv) deploy(tag string, mod func(*deploy.Options)) (*deploy.Result, error) {
	e.t.Helper()
	o := deploy.Options{Stack: e.load(tag), Version: tag, Reason: "test deploy of " + tag, LockWait: 2 * time.Minute, HookDir: "testdata"}
	if mod != nil {
		mod(&o)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	return e.deployer("tester").Deploy(ctx, o)
}

func (e *testEnv) url() string { return fmt.Sprintf("http://127.0.0.1:%d/", e.port) }

// versions reads shoal's version label of every service of the stack.
func (e *testEnv) versions() map[string]string {
	e.t.Helper()
	st, err := e.deployer("tester").Status(context.Background(), e.stack)
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[string]string{}
	for _, s := range st.Services {
		out[strings.TrimPrefix(s.Name, e.stack+"_")] = s.Version
	}
	return out
}

func (e *testEnv) wantVersions(want string) {
	e.t.Helper()
	for svc, v := range e.versions() {
		if svc == "front" {
			continue // its image never changes: it keeps the version of the deploy that created it
		}
		if v != want {
			e.t.Errorf("service %s is at version %q, want %q", svc, v, want)
		}
	}
}

func checkNoFailures(t *testing.T, what string, r deploytest.LoadResult) {
	t.Helper()
	t.Logf("FIGURE load during %s: %d ok, %d failed, responses %v", what, r.OK, r.Failed, r.Seen)
	if r.Failed != 0 {
		t.Errorf("%s: %d of %d requests failed: %v", what, r.Failed, r.OK+r.Failed, r.Errors)
	}
	if r.OK < 50 {
		t.Errorf("%s: only %d requests succeeded: the load generator did not run through the deploy", what, r.OK)
	}
}

// TestDeployLifecycle walks one stack through the life the issue describes:
// first deploy, unchanged redeploy, zero-downtime update under load, a version
// whose health check fails (Swarm rolls back), a failing release task, dry run,
// explicit rollback, status and logs.
func TestDeployLifecycle(t *testing.T) {
	e := setup(t, "shoaltest")
	e.image("proxy", nil)
	e.image("v1", nil)
	e.image("v2", nil)
	e.image("v3", map[string]string{"FAIL_HEALTH": "1"})
	e.image("v4", map[string]string{"RELEASE_EXIT": "1"})

	// 1. First deploy creates everything.
	res, err := e.deploy("v1", nil)
	if err != nil {
		t.Fatalf("deploy v1: %v", err)
	}
	t.Logf("FIGURE deploy v1 (create 4 services): %s", res.Duration)
	deploytest.WaitServing(t, e.url(), "version=v1", 30*time.Second)
	if out := e.out.reset(); !strings.Contains(out, "release 1 | release migrate: running for version v1") {
		t.Errorf("release task logs were not streamed; output:\n%s", out)
	}
	e.wantVersions("v1")

	// 2. The same again changes nothing and is fast.
	res, err = e.deploy("v1", nil)
	if err != nil {
		t.Fatalf("redeploy v1: %v", err)
	}
	t.Logf("FIGURE deploy unchanged stack (4 services): %s", res.Duration)
	if res.Plan.Changed() {
		t.Errorf("redeploy of the same stack planned changes: %+v", res.Plan.Changes)
	}
	if out := e.out.reset(); strings.Contains(out, "release 1") {
		t.Errorf("release task ran although nothing changed:\n%s", out)
	}

	// 3. v2 under load: zero failed requests.
	load := deploytest.StartLoad(e.url(), 50)
	res, err = e.deploy("v2", nil)
	time.Sleep(2 * time.Second) // keep the load on while the old tasks drain
	lr := load.Stop()
	if err != nil {
		t.Fatalf("deploy v2: %v", err)
	}
	t.Logf("FIGURE deploy changed stack, 3 services changed (web x2, worker, api) + front unchanged (v1→v2): %s", res.Duration)
	checkNoFailures(t, "v1→v2 rolling update", lr)
	if lr.Seen["version=v2"] == 0 {
		t.Errorf("never saw v2 answer during the deploy: %v", lr.Seen)
	}
	deploytest.WaitServing(t, e.url(), "version=v2", 10*time.Second)
	e.wantVersions("v2")
	e.out.reset()

	// 4. v3 never becomes healthy: Swarm rolls back, shoal exits with an error,
	// v2 keeps serving without a failed request.
	load = deploytest.StartLoad(e.url(), 50)
	start := time.Now()
	_, err = e.deploy("v3", nil)
	lr = load.Stop()
	t.Logf("FIGURE failed deploy v3 detected and rolled back in %s", time.Since(start))
	var de *deploy.DeployError
	if !errors.As(err, &de) {
		t.Fatalf("deploy v3 (failing health check): got %v, want a DeployError", err)
	}
	t.Logf("deploy v3 error:\n%v", err)
	if !strings.Contains(err.Error(), "shoaltest_web") || !strings.Contains(err.Error(), "rolled back") ||
		!strings.Contains(err.Error(), "health check failing (exit 1): unhealthy: 500") {
		t.Errorf("error does not name the failing service, the failing health check and the rollback:\n%v", err)
	}
	checkNoFailures(t, "failed v3 deploy and rollback", lr)
	if lr.Seen["version=v3"] != 0 {
		t.Errorf("an unhealthy v3 task answered %d requests", lr.Seen["version=v3"])
	}
	deploytest.WaitServing(t, e.url(), "version=v2", 10*time.Second)
	e.wantVersions("v2")
	e.out.reset()

	// 5. A failing release task stops the deploy before any service changes.
	load = deploytest.StartLoad(e.url(), 50)
	_, err = e.deploy("v4", nil)
	time.Sleep(time.Second) // the release job's container goes away after the deploy returns
	checkNoFailures(t, "deploy stopped by a failing release task", load.Stop())
	if err == nil || !strings.Contains(err.Error(), "release task") || !strings.Contains(err.Error(), "exit code 1") ||
		!strings.Contains(err.Error(), `relation "shop_order" already exists`) {
		t.Fatalf("deploy v4 (failing release task): got %v, want the release task's failure with its log tail", err)
	}
	deploytest.WaitServing(t, e.url(), "version=v2", 5*time.Second)
	e.wantVersions("v2")
	jobs, err := e.local.ServiceList(context.Background(), client.ServiceListOptions{Filters: make(client.Filters).Add("label", deploy.LabelRelease)})
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs.Items) != 0 {
		t.Errorf("release job services left behind: %d", len(jobs.Items))
	}

	// 6. Dry run shows the change and changes nothing.
	e.out.reset()
	_, err = e.deploy("v1", func(o *deploy.Options) { o.DryRun = true })
	if err != nil {
		t.Fatalf("dry run: %v", err)
	}
	if out := e.out.reset(); !strings.Contains(out, "service shoaltest_web: update: image "+e.reg+"/app:v2 → "+e.reg+"/app:v1") {
		t.Errorf("dry run output does not show the image change:\n%s", out)
	}
	e.wantVersions("v2")

	// 7. Explicit rollback after a good deploy returns to the version before it.
	if _, err := e.deploy("v1", nil); err != nil {
		t.Fatalf("deploy v1 again: %v", err)
	}
	e.wantVersions("v1")
	// The failed v3 and v4 deploys left configs behind; this good deploy pruned them
	// but kept v2's, which the rollback below needs.
	cfgs, err := e.local.ConfigList(context.Background(), client.ConfigListOptions{Filters: make(client.Filters).Add("label", stack.LabelNamespace+"="+e.stack)})
	if err != nil {
		t.Fatal(err)
	}
	var contents []string
	for _, c := range cfgs.Items {
		ins, err := e.local.ConfigInspect(context.Background(), c.ID, client.ConfigInspectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		contents = append(contents, string(ins.Config.Spec.Data))
	}
	slices.Sort(contents)
	if strings.Join(contents, ",") != "version v1,version v2" {
		t.Errorf("stack configs after deploying v1 over v2: %q, want v1's and v2's", contents)
	}
	rolled, err := e.deployer("tester").Rollback(context.Background(), e.stack, deploy.RollbackOptions{LockWait: time.Minute})
	if err != nil {
		t.Fatalf("rollback: %v", err)
	}
	if len(rolled) != 3 {
		t.Errorf("rolled back %v, want the 3 services the last deploy changed", rolled)
	}
	deploytest.WaitServing(t, e.url(), "version=v2", 10*time.Second)
	e.wantVersions("v2")

	// 8. Status and logs.
	st, err := e.deployer("tester").Status(context.Background(), e.stack)
	if err != nil {
		t.Fatal(err)
	}
	var table strings.Builder
	st.Print(&table)
	t.Logf("status:\n%s", table.String())
	for _, want := range []string{"shoaltest_web", "2/2", e.reg + "/app:v2", "tester"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("status does not show %q:\n%s", want, table.String())
		}
	}
	var logs strings.Builder
	if err := e.deployer("tester").Logs(context.Background(), e.stack, "web", deploy.LogsOptions{Tail: "50"}, &logs); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "serving version v2 on :8000") {
		t.Errorf("logs of web do not show v2 serving:\n%s", logs.String())
	}
	err = e.deployer("tester").Logs(context.Background(), e.stack, "nope", deploy.LogsOptions{}, &logs)
	if err == nil || !strings.Contains(err.Error(), "no service \"nope\"") || !strings.Contains(err.Error(), "web") {
		t.Errorf("logs of an unknown service: %v", err)
	}

	// 9. Two pipelines deploy at once: one fails at once naming the lock's owner.
	type outcome struct {
		who string
		err error
	}
	results := make(chan outcome, 2)
	for _, who := range []string{"alice", "bob"} {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			_, err := e.deployer(who).Deploy(ctx, deploy.Options{Stack: e.load("v1"), Version: "v1", Reason: who + "'s pipeline"})
			results <- outcome{who, err}
		}()
	}
	var won, lost []outcome
	for range 2 {
		r := <-results
		var held *deploy.LockHeldError
		switch {
		case r.err == nil:
			won = append(won, r)
		case errors.As(r.err, &held):
			lost = append(lost, r)
		default:
			t.Errorf("%s's deploy: %v", r.who, r.err)
		}
	}
	if len(won) != 1 || len(lost) != 1 {
		t.Fatalf("concurrent deploys: %d succeeded, %d refused by the lock; want one each", len(won), len(lost))
	}
	if msg := lost[0].err.Error(); !strings.Contains(msg, "locked by "+won[0].who) || !strings.Contains(msg, won[0].who+"'s pipeline") {
		t.Errorf("lock refusal does not name the holder %s: %s", won[0].who, msg)
	}

	// 10. With --lock-wait, a deploy waits for the holder to finish.
	ctx := context.Background()
	held, err := e.deployer("carol").AcquireLock(ctx, e.stack, "carol's hotfix", 0, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(1500 * time.Millisecond)
		_ = held.Release()
	}()
	e.out.reset()
	waitStart := time.Now()
	if _, err := e.deploy("v1", func(o *deploy.Options) { o.LockWait = 30 * time.Second }); err != nil {
		t.Fatalf("deploy waiting for the lock: %v", err)
	}
	if waited := time.Since(waitStart); waited < time.Second {
		t.Errorf("deploy did not wait for the lock (took %s)", waited)
	}
	if out := e.out.reset(); !strings.Contains(out, "locked by carol (carol's hotfix); waiting") {
		t.Errorf("waiting for the lock was not shown:\n%s", out)
	}

	// 11. A lock older than its TTL (its deploy was killed) is taken over.
	dead, err := e.deployer("dave").AcquireLock(ctx, e.stack, "killed job", 0, time.Nanosecond)
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Release() // stops its renewals; the lock itself is gone by then
	if _, err := e.deploy("v1", func(o *deploy.Options) { o.LockWait = 0 }); err != nil {
		t.Fatalf("deploy over a stale lock: %v", err)
	}
	if out := e.out.reset(); !strings.Contains(out, "taking it over") {
		t.Errorf("stale lock takeover was not shown:\n%s", out)
	}
	if l, err := e.deployer("x").LockStatus(ctx, e.stack); err != nil || l != nil {
		t.Errorf("lock after the deploys = %+v, %v; want released", l, err)
	}

	// 11b. A live holder renews its lock: a deploy longer than the TTL keeps it.
	live, err := e.deployer("erin").AcquireLock(ctx, e.stack, "long deploy", 0, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	var lockErr *deploy.LockHeldError
	if _, err := e.deployer("frank").AcquireLock(ctx, e.stack, "impatient", 0, time.Minute); !errors.As(err, &lockErr) || lockErr.Lock.Owner != "erin" {
		t.Errorf("lock of a live holder past its TTL: got %v, want it still held by erin", err)
	}
	if err := live.Release(); err != nil {
		t.Fatal(err)
	}

	// 12. A rollout that does not converge in time is rolled back by shoal itself
	// (Swarm saw no failure): every service returns to the version before.
	_, err = e.deploy("v2", func(o *deploy.Options) { o.Timeout = 500 * time.Millisecond })
	if !errors.As(err, &de) || !errors.Is(err, deploy.ErrTimeout) {
		t.Fatalf("deploy with a 500ms timeout: got %v, want a DeployError for the timeout", err)
	}
	if len(de.RolledBack) != 3 {
		t.Errorf("after the timeout shoal rolled back %v, want the 3 changed services", de.RolledBack)
	}
	deploytest.WaitServing(t, e.url(), "version=v1", 10*time.Second)
	e.wantVersions("v1")
}
