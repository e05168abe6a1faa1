package daemon_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	metadata "github.com/digitalocean/go-metadata"
	"github.com/pelletier/go-toml/v2"
	"go.yaml.in/yaml/v4"
	"golang.org/x/crypto/ssh"

	"github.com/shoalci/shoal/internal/clock"
	"github.com/shoalci/shoal/internal/cloud"
	"github.com/shoalci/shoal/internal/config"
	"github.com/shoalci/shoal/internal/daemon"
	"github.com/shoalci/shoal/internal/demand"
	"github.com/shoalci/shoal/internal/doemu"
	"github.com/shoalci/shoal/internal/glemu"
	"github.com/shoalci/shoal/internal/policy"
	"github.com/shoalci/shoal/internal/reconcile"
	"github.com/shoalci/shoal/internal/runnerhost"
	"github.com/shoalci/shoal/internal/runnerhost/runnerhosttest"
)

const (
	doToken = "dop_v1_daemon_test"
	glToken = "glpat-daemon-test"
)

// droplets plays the runner Droplets' side: at boot each reads its cloud-init
// from the metadata service, as cloud-init does, and starts a runner manager
// with the token and system_id it finds there; its sshd answers the drain
// command by stopping that runner. When a Droplet is deleted its runner is
// gone: a job still running on it fails, and a runner that was not drained
// first fails the test.
type droplets struct {
	t      *testing.T
	do     string // the DigitalOcean emulator's URL
	gl     *glemu.Server
	host   *runnerhost.HostKey
	shoal  ssh.PublicKey
	events chan doemu.DropletEvent

	mu      sync.Mutex
	byIP    map[string]string // the sshd of each Droplet by its public address
	runners []runner          // in the order they started
	byID    map[int]runner    // the runner of each Droplet
	drained map[string]bool   // by system_id
	// hung: the Droplets ignore a graceful shutdown, and one deleted
	// undrained is expected (it never answered); ignoreShutdown: they ignore
	// it, that is all.
	hung, ignoreShutdown bool
	cut                  map[string]string // byIP before unreachable
	// onNoRoute, when set, hears each SSH dial that finds no route.
	onNoRoute func()
	// together, when above 1, holds each drain until that many are in
	// flight at once (or 5 s have passed); most is the most seen.
	together, inFlight, most int
}

type runner struct{ token, systemID string }

func (d *droplets) onDroplet(ev doemu.DropletEvent) { d.events <- ev }

// boot starts the runners of the Droplets that became active, and ends those
// of the Droplets deleted.
func (d *droplets) boot() {
	for {
		select {
		case ev := <-d.events:
			switch ev.Kind {
			case "active":
				d.start(ev.ID)
			case "deleted":
				d.gone(ev)
			case "shutdown":
				d.shutDown(ev)
			}
		default:
			return
		}
	}
}

func (d *droplets) gone(ev doemu.DropletEvent) {
	d.mu.Lock()
	r, ok := d.byID[ev.ID]
	drained := d.drained[r.systemID]
	d.mu.Unlock()
	if !ok {
		return // deleted before its runner started
	}
	if !drained && !d.hung {
		d.t.Errorf("Droplet %s was deleted at %s without its runner being drained first", ev.Name, ev.At.Format("15:04:05"))
	}
	if err := d.gl.Unregister(r.token, r.systemID); err != nil {
		d.t.Errorf("runner of deleted Droplet %s: %v", ev.Name, err)
	}
}

// shutdownDone is the Droplet's side of a graceful shutdown: systemd stops
// the runner as a drain does, and the Droplet powers off once the runner
// has exited, its jobs done.
func (d *droplets) shutdownDone(id int) bool {
	if d.hung || d.ignoreShutdown {
		return false // the guest ignores the power button
	}
	d.mu.Lock()
	r, ok := d.byID[id]
	first := ok && !d.drained[r.systemID]
	if first {
		d.drained[r.systemID] = true
	}
	d.mu.Unlock()
	if !ok {
		return true // no runner started on it
	}
	if first {
		if err := d.gl.Drain(r.token, r.systemID); err != nil {
			d.t.Errorf("runner of Droplet %d being shut down: %v", id, err)
		}
	}
	for _, m := range d.gl.Managers() {
		if m.SystemID == r.systemID && m.Running > 0 {
			return false
		}
	}
	return true
}

// shutDown is a Droplet powered off after a graceful shutdown: a job still
// running on it would be cut off, which fails the test.
func (d *droplets) shutDown(ev doemu.DropletEvent) {
	d.mu.Lock()
	r, ok := d.byID[ev.ID]
	d.mu.Unlock()
	if !ok {
		return
	}
	for _, m := range d.gl.Managers() {
		if m.SystemID == r.systemID && m.Running > 0 {
			d.t.Errorf("Droplet %s was shut down at %s with %d jobs running", ev.Name, ev.At.Format("15:04:05"), m.Running)
		}
	}
	d.mu.Lock()
	d.drained[r.systemID] = true
	d.mu.Unlock()
	if err := d.gl.Drain(r.token, r.systemID); err != nil {
		d.t.Errorf("runner of shut down Droplet %s: %v", ev.Name, err)
	}
}

// unreachable cuts the Droplet of every runner started so far off from SSH;
// reachable undoes it.
func (d *droplets) unreachable() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.cut = maps.Clone(d.byIP)
	clear(d.byIP)
}

func (d *droplets) reachable() {
	d.mu.Lock()
	defer d.mu.Unlock()
	maps.Copy(d.byIP, d.cut)
}

func (d *droplets) start(id int) {
	base, _ := url.Parse(doemu.MetadataURL(d.do, id))
	md, err := metadata.NewClient(metadata.WithBaseURL(base)).Metadata()
	if err != nil {
		d.t.Fatalf("droplet %d reads its metadata: %v", id, err)
	}
	var ci struct {
		WriteFiles []struct{ Path, Content string } `yaml:"write_files"`
	}
	if err := yaml.Unmarshal([]byte(md.UserData), &ci); err != nil {
		d.t.Fatalf("droplet %d: user data: %v", id, err)
	}
	var rc struct {
		Runners []struct{ Token string } `toml:"runners"`
	}
	for _, f := range ci.WriteFiles {
		if f.Path == "/etc/gitlab-runner/config.toml" {
			if err := toml.Unmarshal([]byte(f.Content), &rc); err != nil {
				d.t.Fatalf("droplet %d: config.toml: %v", id, err)
			}
		}
	}
	if len(rc.Runners) != 1 {
		d.t.Fatalf("droplet %d: no runner in its cloud-init", id)
	}
	r := runner{token: rc.Runners[0].Token, systemID: runnerhost.SystemID(md.Hostname)}
	if err := d.gl.RegisterManager(r.token, r.systemID, glemu.ManagerOptions{Capacity: 1}); err != nil {
		d.t.Fatalf("droplet %d: runner: %v", id, err)
	}
	// Its sshd, on a loopback port standing for port 22 of its address.
	addr := runnerhosttest.Serve(d.t, d.host.Signer(), d.shoal, func(cmd string) string {
		if strings.HasPrefix(cmd, "systemctl stop ") {
			return d.stop(r)
		}
		return d.show(r)
	})
	d.mu.Lock()
	d.byIP[md.Interfaces["public"][0].IPv4.IPAddress] = addr
	d.runners = append(d.runners, r)
	d.byID[id] = r
	d.mu.Unlock()
}

// dial connects shoal to the sshd of the Droplet at addr.
func (d *droplets) dial(_ context.Context, _, addr string) (net.Conn, error) {
	ip, _, _ := net.SplitHostPort(addr)
	d.mu.Lock()
	sshd, ok := d.byIP[ip]
	d.mu.Unlock()
	if !ok {
		if d.onNoRoute != nil {
			d.onNoRoute()
		}
		return nil, fmt.Errorf("no route to %s", addr)
	}
	return net.Dial("tcp", sshd)
}

// show is systemctl show on the Droplet of r: active until it is stopped,
// then deactivating until its jobs end.
func (d *droplets) show(r runner) string {
	d.mu.Lock()
	stopped := d.drained[r.systemID]
	d.mu.Unlock()
	state, jobs := "active", 0
	for _, m := range d.gl.Managers() {
		if m.SystemID == r.systemID {
			jobs = m.Running
		}
	}
	if stopped {
		state = "inactive"
		if jobs > 0 {
			state = "deactivating"
		}
	}
	return fmt.Sprintf("LoadState=loaded\nActiveState=%s\nJobs=%d\n", state, jobs)
}

// stop is systemctl stop on the Droplet of r, then show: gitlab-runner
// takes no new job and exits when its jobs are done.
func (d *droplets) stop(r runner) string {
	d.mu.Lock()
	d.inFlight++
	d.most = max(d.most, d.inFlight)
	d.mu.Unlock()
	for give := time.Now().Add(5 * time.Second); time.Now().Before(give); time.Sleep(time.Millisecond) {
		d.mu.Lock()
		met := d.most >= d.together
		d.mu.Unlock()
		if met {
			break
		}
	}
	defer func() {
		d.mu.Lock()
		d.inFlight--
		d.mu.Unlock()
	}()
	if err := d.gl.Drain(r.token, r.systemID); err != nil {
		return "LoadState=loaded\nActiveState=failed\n"
	}
	d.mu.Lock()
	d.drained[r.systemID] = true
	d.mu.Unlock()
	return d.show(r)
}

// rig is a production setup against both emulators over HTTP: a GitLab
// project and runner, a DigitalOcean account with shoal's SSH key, and a
// config for one pool; daemon builds a daemon for it as the command does.
type rig struct {
	t       *testing.T
	clk     *clock.Virtual
	fleet   *droplets
	gl      *glemu.Server
	glDown  *atomic.Bool // GitLab's API refuses shoal's token (its runners still work)
	doc     cloud.Cloud
	project int64
	setup   daemon.Setup
	glURL   string
	// problemsExpected: failed actions (drains that cannot reach a runner)
	// are part of the test.
	problemsExpected bool
}

func newRig(t *testing.T) *rig { return newRigWith(t, nil) }

// newRigWith is newRig with DigitalOcean's API behind wrapDO.
func newRigWith(t *testing.T, wrapDO func(http.Handler) http.Handler) *rig {
	clk := clock.NewVirtual(time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC))
	hostKey, err := runnerhost.NewHostKey()
	if err != nil {
		t.Fatal(err)
	}
	shoalKey := runnerhosttest.NewSigner(t)
	fleet := &droplets{t: t, host: hostKey, shoal: shoalKey.PublicKey(), events: make(chan doemu.DropletEvent, 100),
		byIP: map[string]string{}, byID: map[int]runner{}, drained: map[string]bool{}}

	do, err := doemu.New(doemu.Options{Clock: clk, Tokens: []string{doToken}, BootDelay: doemu.Range{Min: 50 * time.Second, Max: 50 * time.Second},
		OnDroplet: fleet.onDroplet, ShutdownDone: fleet.shutdownDone})
	if err != nil {
		t.Fatal(err)
	}
	var api http.Handler = do
	if wrapDO != nil {
		api = wrapDO(do)
	}
	doSrv := httptest.NewServer(api)
	t.Cleanup(doSrv.Close)
	fleet.do = doSrv.URL
	gl := glemu.New(glemu.Options{Clock: clk, Tokens: []string{glToken}})
	glDown := new(atomic.Bool)
	glSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if glDown.Load() {
			http.Error(w, `{"message":"401 Unauthorized"}`, http.StatusUnauthorized)
			return
		}
		gl.ServeHTTP(w, req)
	}))
	t.Cleanup(glSrv.Close)
	fleet.gl = gl
	rn, err := gl.CreateRunner(glemu.RunnerSpec{Description: "shoal docker", Tags: []string{"docker"}})
	if err != nil {
		t.Fatal(err)
	}
	project, err := gl.AddProject("app", 0)
	if err != nil {
		t.Fatal(err)
	}

	doc, err := cloud.New(cloud.Config{Token: doToken, APIURL: doSrv.URL, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	key, err := doc.CreateSSHKey(context.Background(), "shoal", string(ssh.MarshalAuthorizedKey(shoalKey.PublicKey())))
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{t: t, clk: clk, fleet: fleet, gl: gl, glDown: glDown, doc: doc, project: project, glURL: glSrv.URL,
		setup: daemon.Setup{File: "shoal.toml", DOToken: doToken, GitLabToken: glToken,
			RunnerTokens: map[string]string{"docker": rn.Token}, SSHSigner: shoalKey, HostKey: hostKey,
			DOAPIURL: doSrv.URL, Dial: fleet.dial, Clock: clk}}
	r.configure(key.Fingerprint, t.TempDir(), fmt.Sprintf(poolTOML, "docker", "docker", rn.ID))
	return r
}

// daemon builds a daemon, as `shoal autoscale` does; each call is a fresh
// process that knows only what DigitalOcean and GitLab tell it.
func (r *rig) daemon() *daemon.Daemon {
	d, err := daemon.Build(r.setup)
	if err != nil {
		r.t.Fatal(err)
	}
	return d
}

// pipeline creates a one-stage pipeline of docker jobs of these durations.
func (r *rig) pipeline(durations ...time.Duration) []int64 {
	var jobs []glemu.JobSpec
	for _, d := range durations {
		jobs = append(jobs, glemu.JobSpec{Duration: d, Tags: []string{"docker"}})
	}
	pl, err := r.gl.CreatePipeline(r.project, []glemu.StageSpec{{Jobs: jobs}})
	if err != nil {
		r.t.Fatal(err)
	}
	return pl.JobIDs[0]
}

// succeeded reports whether all these jobs succeeded.
func (r *rig) succeeded(ids []int64) bool {
	for _, id := range ids {
		if j, _ := r.gl.Job(id); j.Status != glemu.StatusSuccess {
			return false
		}
	}
	return true
}

// run steps the daemon every 5 seconds until done or for at most limit,
// and returns how many Droplets it created and deleted.
func (r *rig) run(d *daemon.Daemon, limit time.Duration, done func(created, deleted int) bool) (created, deleted int) {
	for end := r.clk.Now().Add(limit); r.clk.Now().Before(end) && !done(created, deleted); {
		rep, err := d.Step(context.Background())
		if err != nil {
			r.t.Fatalf("step at %s: %v", r.clk.Now().Format("15:04:05"), err)
		}
		if !r.problemsExpected {
			for _, p := range rep.Problems {
				r.t.Errorf("step at %s: %v", r.clk.Now().Format("15:04:05"), p)
			}
		}
		created += len(rep.Created)
		deleted += len(rep.Deleted)
		r.clk.Advance(5 * time.Second)
		r.fleet.boot()
	}
	return created, deleted
}

// TestDaemonScalesOutRunsTheJobsAndScalesToZero runs the daemon as built for
// production against both emulators over HTTP: a pipeline's jobs get Droplets,
// whose runners (started from the cloud-init shoal wrote) run them; then every
// runner is drained over SSH and every Droplet deleted.
func TestDaemonScalesOutRunsTheJobsAndScalesToZero(t *testing.T) {
	r := newRig(t)
	d := r.daemon()
	jobs := r.pipeline(2*time.Minute, 3*time.Minute, 4*time.Minute)
	created, deleted := r.run(d, 20*time.Minute, func(created, deleted int) bool {
		return r.succeeded(jobs) && created > 0 && deleted == created
	})
	for _, id := range jobs {
		if j, _ := r.gl.Job(id); j.Status != glemu.StatusSuccess {
			t.Errorf("job %d is %s, want success", id, j.Status)
		}
	}
	if created != 3 {
		t.Errorf("created %d Droplets for 3 jobs, want 3", created)
	}
	left, err := r.doc.ListDroplets(context.Background(), reconcile.FleetTag)
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 0 || deleted != created {
		t.Errorf("%d Droplets left, %d of %d deleted: the fleet did not scale to zero", len(left), deleted, created)
	}
	// Each runner was drained before its Droplet went (droplets.gone checks).

	// The metrics and the health check say the same.
	srv := httptest.NewServer(d.Handler())
	defer srv.Close()
	body := get(t, srv.URL+"/metrics", http.StatusOK)
	for _, want := range []string{"shoal_droplets_created_total 3", "shoal_droplets_deleted_total 3", "shoal_droplets 0", `shoal_reconcile_steps_total{result="ok"}`,
		`shoal_policy_arrivals_per_minute{pool="docker"} `} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	// The boot time the policy learned: 50 s to active, then the runner starts.
	if boot := metric(t, body, `shoal_policy_boot_seconds{pool="docker"}`); boot < 50 || boot > 70 {
		t.Errorf("learned boot time %v s, want 50-70", boot)
	}
	get(t, srv.URL+"/healthz", http.StatusOK)
}

// TestRestartedDaemonReplacesStoppedRunners: runners stopped while the
// daemon was down (its drains had begun, or someone stopped them) still look
// online to GitLab for two hours. The new daemon must not count on their
// slots: a job that comes gets a new Droplet, and the stopped runners'
// Droplets are drained, all at once, and deleted.
func TestRestartedDaemonReplacesStoppedRunners(t *testing.T) {
	r := newRig(t)
	first := r.pipeline(time.Minute, time.Minute, time.Minute)
	created, _ := r.run(r.daemon(), 10*time.Minute, func(int, int) bool { return r.succeeded(first) })
	if created != 3 || !r.succeeded(first) {
		t.Fatalf("before the restart: %d Droplets created, jobs done %v; want 3, true", created, r.succeeded(first))
	}
	// The daemon stops here; its runners are stopped while it is down.
	r.fleet.mu.Lock()
	stopped := slices.Clone(r.fleet.runners)
	r.fleet.mu.Unlock()
	for _, rn := range stopped {
		r.fleet.stop(rn)
	}
	r.clk.Advance(time.Minute)
	r.fleet.mu.Lock()
	r.fleet.together, r.fleet.most = len(stopped), 0
	r.fleet.mu.Unlock()

	second := r.pipeline(time.Minute)
	created, deleted := r.run(r.daemon(), 15*time.Minute, func(_, deleted int) bool { return r.succeeded(second) && deleted == 4 })
	if !r.succeeded(second) {
		t.Fatal("the job that came after the restart never ran: the stopped runners' slots were counted on")
	}
	if created != 1 || deleted != 4 {
		t.Errorf("after the restart: %d created, %d deleted; want 1 and 4 (the stopped runners' Droplets too)", created, deleted)
	}
	r.fleet.mu.Lock()
	defer r.fleet.mu.Unlock()
	if r.fleet.most < len(stopped) {
		t.Errorf("at most %d drains ran at once; want the %d stopped runners drained together", r.fleet.most, len(stopped))
	}
}

// metric is the value of one sample in a /metrics body.
func metric(t *testing.T, body, name string) float64 {
	t.Helper()
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return f
		}
	}
	t.Fatalf("/metrics lacks %s", name)
	return 0
}

func get(t *testing.T, u string, want int) string {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("GET %s: %d %s, want %d", u, resp.StatusCode, b, want)
	}
	return string(b)
}

// countingStepper counts reconciles and fails the first one.
type countingStepper struct {
	mu    sync.Mutex
	steps int
	seen  chan struct{}
}

func (c *countingStepper) Step(context.Context) (reconcile.Report, error) {
	c.mu.Lock()
	c.steps++
	n := c.steps
	c.mu.Unlock()
	c.seen <- struct{}{}
	if n == 1 {
		return reconcile.Report{}, errors.New("GitLab is down")
	}
	return reconcile.Report{}, nil
}

// TestRunWakesOnAJobHook: with an hour between reconciles, a Job Hook for a
// pending job starts one at once; a failed reconcile does not stop the loop
// and shows in the health check.
func TestRunWakesOnAJobHook(t *testing.T) {
	hook, err := demand.NewWebhook("s3cret", nil)
	if err != nil {
		t.Fatal(err)
	}
	st := &countingStepper{seen: make(chan struct{}, 10)}
	d, err := daemon.New(daemon.Options{Reconciler: st, Interval: time.Hour, Webhook: hook})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(d.Handler())
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error)
	go func() { ran <- d.Run(ctx) }()

	<-st.seen // the first reconcile, at start; it fails
	waitHealth(t, srv.URL, http.StatusServiceUnavailable, "no successful reconcile yet; last error: GitLab is down")
	post := func(token string) int {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/hooks/gitlab", strings.NewReader(`{"object_kind":"build","build_status":"pending","build_id":1}`))
		req.Header.Set("X-Gitlab-Event", "Job Hook")
		req.Header.Set("X-Gitlab-Token", token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := post("wrong"); code == http.StatusOK {
		t.Error("a hook with the wrong secret token was accepted")
	}
	if code := post("s3cret"); code != http.StatusOK {
		t.Fatalf("hook: %d", code)
	}
	select {
	case <-st.seen:
	case <-time.After(10 * time.Second):
		t.Fatal("a pending-job hook did not start a reconcile")
	}
	waitHealth(t, srv.URL, http.StatusOK, "ok")
	cancel()
	if err := <-ran; err != nil {
		t.Errorf("Run after cancel: %v", err)
	}
}

// waitHealth polls /healthz until it answers code with body (a reconcile
// records its result just after it returns).
func waitHealth(t *testing.T, base string, code int, body string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(base + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == code && strings.TrimSpace(string(b)) == body {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("/healthz: %d %q, want %d %q", resp.StatusCode, b, code, body)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestDaemonKeepsWhatThePolicyLearnedAcrossARestart: the arrival rate and
// the boot time learned by one daemon are saved to the state file, and the
// next daemon starts from them instead of from nothing. A state file it
// cannot read is set aside: the daemon still starts.
func TestDaemonKeepsWhatThePolicyLearnedAcrossARestart(t *testing.T) {
	r := newRig(t)
	stateFile := filepath.Join(r.setup.Config.Daemon.StateDir, daemon.PolicyStateFile)
	learned := func() policy.ShoalPoolState {
		t.Helper()
		data, err := os.ReadFile(stateFile)
		if err != nil {
			t.Fatalf("state file: %v", err)
		}
		var st policy.State
		if err := json.Unmarshal(data, &st); err != nil {
			t.Fatalf("state file: %v", err)
		}
		sp, ok := st.ShoalPool("docker")
		if !ok {
			t.Fatalf("state file has nothing on pool docker: %s", data)
		}
		return sp
	}

	jobs := r.pipeline(time.Minute, time.Minute)
	r.run(r.daemon(), 20*time.Minute, func(created, deleted int) bool { return r.succeeded(jobs) && created > 0 && deleted == created })
	before := learned()
	if before.ArrivalsPerMinute <= 0 || before.Boot <= 0 || before.Boot == 90*time.Second {
		t.Fatalf("the first daemon saved %+v: want an arrival rate and the boot time it saw", before)
	}

	r.clk.Advance(2 * time.Minute)
	r.run(r.daemon(), 5*time.Second, func(int, int) bool { return false })
	after := learned()
	if after.Boot != before.Boot || after.ArrivalsPerMinute <= 0 || after.ArrivalsPerMinute > before.ArrivalsPerMinute {
		t.Errorf("after a restart the daemon saved %+v; want the boot time %v and the rate %.3f/min decayed, not a fresh start",
			after, before.Boot, before.ArrivalsPerMinute)
	}

	if err := os.WriteFile(stateFile, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	r.run(r.daemon(), 5*time.Second, func(int, int) bool { return false })
	if fresh := learned(); fresh.ArrivalsPerMinute != 0 {
		t.Errorf("from an unreadable state file the daemon learned %+v; want a fresh start", fresh)
	}
	if bad, err := os.ReadFile(stateFile + ".bad"); err != nil || string(bad) != "{not json" {
		t.Errorf("the unreadable state file was not set aside: %q, %v", bad, err)
	}
}

// TestDrainsADropletListedBeforeItHadAnAddress: short jobs end before the
// next full listing, while the fleet as last listed still shows their
// Droplets "new", without an address; the drain looks the address up rather
// than fail until the next listing.
func TestDrainsADropletListedBeforeItHadAnAddress(t *testing.T) {
	r := newRig(t)
	jobs := r.pipeline(time.Minute, time.Minute)
	var drainedBy time.Time
	created, deleted := r.run(r.daemon(), 10*time.Minute, func(created, deleted int) bool {
		if drainedBy.IsZero() && deleted > 0 {
			drainedBy = r.clk.Now()
		}
		return r.succeeded(jobs) && created > 0 && deleted == created
	})
	if created != 2 || deleted != 2 {
		t.Fatalf("%d created, %d deleted; want 2 and 2", created, deleted)
	}
	// rig.run fails the test on any failed action; the first Droplet goes
	// inside the first two minutes, before the fleet is listed again.
	if start := time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC); drainedBy.Sub(start) >= 2*time.Minute+5*time.Second {
		t.Errorf("the first Droplet went at %s; want it before the next listing", drainedBy.Format("15:04:05"))
	}
}

// okStepper is a reconciler whose every step succeeds.
type okStepper struct{ steps chan struct{} }

func (s okStepper) Step(context.Context) (reconcile.Report, error) {
	select {
	case s.steps <- struct{}{}:
	default:
	}
	return reconcile.Report{}, nil
}

// TestSavesWhatThePolicyLearnedOnceAMinuteAndWhenStopping: reconciles every
// few seconds save at most once a minute; stopping saves once more.
func TestSavesWhatThePolicyLearnedOnceAMinuteAndWhenStopping(t *testing.T) {
	clk := clock.NewVirtual(time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC))
	var mu sync.Mutex
	saves := 0
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return saves
	}
	st := okStepper{steps: make(chan struct{}, 1)}
	d, err := daemon.New(daemon.Options{Reconciler: st, Interval: 10 * time.Second, Clock: clk,
		Save: func() error { mu.Lock(); saves++; mu.Unlock(); return nil }})
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []int{1, 1, 1, 1, 1, 1, 2, 2} { // a step every 10 s
		if _, err := d.Step(context.Background()); err != nil {
			t.Fatal(err)
		}
		if got := count(); got != want {
			t.Fatalf("after %d steps 10 s apart: %d saves, want %d", i+1, got, want)
		}
		clk.Advance(10 * time.Second)
	}

	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error)
	go func() { ran <- d.Run(ctx) }()
	<-st.steps // Run's first reconcile, within the minute: no save
	cancel()
	if err := <-ran; err != nil {
		t.Fatal(err)
	}
	if got := count(); got != 3 {
		t.Errorf("%d saves after Run stopped, want 3: stopping must save what was learned", got)
	}
}

// TestCheck: --check finds nothing wrong with a complete setup, and reports
// every problem of a broken one at once, each saying what to do.
func TestCheck(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	findings, err := daemon.Check(ctx, r.setup)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range findings {
		if !f.OK {
			t.Errorf("a complete setup: %s", f.Text)
		}
	}
	if len(findings) != 7 { // state_dir, account, SSH key, region, GitLab, runner, queue
		t.Errorf("%d findings, want 7: %+v", len(findings), findings)
	}
	// More projects than jobs_api_per_minute allows a minute: the one look
	// --check takes reads them all.
	web, err := r.gl.AddProject("web", 0)
	if err != nil {
		t.Fatal(err)
	}
	many := r.setup
	two := *r.setup.Config
	two.GitLab.Projects = []string{fmt.Sprint(r.project), fmt.Sprint(web)}
	two.GitLab.JobsAPIPerMinute = 1
	many.Config = &two
	if findings, err = daemon.Check(ctx, many); err != nil {
		t.Fatal(err)
	}
	for _, f := range findings {
		if !f.OK {
			t.Errorf("two projects, jobs_api_per_minute 1: %s", f.Text)
		}
	}

	// A runner tagged differently from its pool, with a token from the old
	// registration flow; one that takes untagged jobs its pool does not
	// count, with a token GitLab does not know; a pool given another
	// runner's token; pools in a region, of a
	// size and of an image that do not exist; an SSH key not in the account,
	// and shoal's own key missing.
	large, err := r.gl.CreateRunner(glemu.RunnerSpec{Description: "large", Tags: []string{"large"}})
	if err != nil {
		t.Fatal(err)
	}
	arm, err := r.gl.CreateRunner(glemu.RunnerSpec{Description: "arm", Tags: []string{"docker"}, RunUntagged: true})
	if err != nil {
		t.Fatal(err)
	}
	// And a watched project with CI/CD turned off.
	docs, err := r.gl.AddProject("docs", 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.gl.SetCICD(docs, false); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse("shoal.toml", fmt.Appendf(nil, `
[gitlab]
url = %q
projects = ["%d", "%d"]

[daemon]
ssh_keys = ["00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff"]
ssh_identity = "/unused/in/this/test"

[[pool]]
name = "docker"
tags = ["docker"]
region = "xyz9"
runner_id = %d

[[pool]]
name = "arm"
tags = ["docker"]
image = "ubuntu-99-04-x64"
runner_id = %d

[[pool]]
name = "large"
tags = ["docker", "large"]
size = "s-99vcpu-1tb"
max_instances = 600
runner_id = %d
`, r.glURL, r.project, docs, r.setup.Config.Pools[0].RunnerID, arm.ID, large.ID))
	if err != nil {
		t.Fatal(err)
	}
	broken := r.setup
	broken.Config = cfg
	broken.RunnerTokens = map[string]string{"docker": arm.Token, "arm": "glrt-revoked", "large": "GR1348941oldregistration"}
	findings, err = daemon.Check(ctx, broken)
	if err != nil {
		t.Fatal(err)
	}
	var problems []string
	for _, f := range findings {
		t.Logf("ok %v: %s", f.OK, f.Text)
		if !f.OK {
			problems = append(problems, f.Text)
		}
	}
	for _, want := range []string{
		"the pools may reach 620 Droplets and 0 others exist, the account's limit is 500",
		`pool arm: there is no image "ubuntu-99-04-x64"`,
		"SSH key 00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff",
		"shoal's key (ssh_identity",
		`pool docker: there is no region "xyz9"`,
		`pool large: region nyc3 has no size "s-99vcpu-1tb"`,
		"pool large: $SHOAL_RUNNER_TOKEN_LARGE is not a runner authentication token",
		"runner " + fmt.Sprint(large.ID) + "'s tags are [large], the pool's [docker large]",
		"pool arm: runner " + fmt.Sprint(arm.ID) + " takes untagged jobs: true, the pool counts them: false",
		fmt.Sprintf("pool docker: the token in $SHOAL_RUNNER_TOKEN_DOCKER is runner %d's, not runner_id %d's", arm.ID, r.setup.Config.Pools[0].RunnerID),
		"pool arm: GitLab does not take the token in $SHOAL_RUNNER_TOKEN_ARM",
		fmt.Sprintf("project %d is left out: GitLab refuses its job list (403): turn CI/CD on", docs),
	} {
		if !slices.ContainsFunc(problems, func(p string) bool { return strings.Contains(p, want) }) {
			t.Errorf("no problem says %q; problems:\n%s", want, strings.Join(problems, "\n"))
		}
	}
	if len(problems) != 12 {
		t.Errorf("%d problems, want 12:\n%s", len(problems), strings.Join(problems, "\n"))
	}
}

// configure sets the rig's config: GitLab, these SSH keys and state_dir, and pools.
func (r *rig) configure(sshKey, stateDir, pools string) {
	r.t.Helper()
	cfg, err := config.Parse("shoal.toml", fmt.Appendf(nil, `
[gitlab]
url = %q
projects = ["%d"]

[daemon]
ssh_keys = [%q]
ssh_identity = "/unused/in/this/test"
state_dir = %q
%s`, r.glURL, r.project, sshKey, stateDir, pools))
	if err != nil {
		r.t.Fatal(err)
	}
	r.setup.Config = cfg
}

// reconfigure replaces the rig's pools, keeping the rest of its config.
func (r *rig) reconfigure(pools string) {
	r.t.Helper()
	r.configure(r.setup.Config.Daemon.SSHKeys[0], r.setup.Config.Daemon.StateDir, pools)
}

const poolTOML = `
[[pool]]
name = %q
tags = [%q]
max_instances = 5
runner_id = %d
`

// A Droplet whose runner shoal no longer reads from GitLab (its pool was
// removed from the config, or the pool uses a new runner now) may still run
// a job: it is drained over SSH, and deleted only once that job is done.
func TestDropletsOfRunnersNoLongerWatchedAreDrainedBeforeDeletion(t *testing.T) {
	for _, change := range []string{"pool removed", "runner replaced"} {
		t.Run(change, func(t *testing.T) {
			r := newRig(t)
			ids := r.runningJob(30 * time.Minute)
			switch change {
			case "pool removed":
				r.removePool()
			case "runner replaced":
				next, err := r.gl.CreateRunner(glemu.RunnerSpec{Description: "shoal docker v2", Tags: []string{"docker"}})
				if err != nil {
					t.Fatal(err)
				}
				r.reconfigure(fmt.Sprintf(poolTOML, "docker", "docker", next.ID))
				r.setup.RunnerTokens = map[string]string{"docker": next.Token}
			}
			// A restart with the new config; the old runner's Droplet goes
			// once its job is done (the rig fails the test if it goes undrained).
			_, deleted := r.run(r.daemon(), time.Hour, func(_, deleted int) bool { return deleted > 0 })
			if deleted == 0 {
				t.Fatal("the old runner's Droplet was never deleted")
			}
			if !r.succeeded(ids) {
				j, _ := r.gl.Job(ids[0])
				t.Fatalf("the job on the old runner's Droplet ended %s (%s)", j.Status, j.FailureReason)
			}
		})
	}
}

// runningJob starts a docker job of duration d and runs a daemon until a
// runner has taken it.
func (r *rig) runningJob(d time.Duration) []int64 {
	r.t.Helper()
	ids := r.pipeline(d)
	r.run(r.daemon(), 5*time.Minute, func(int, int) bool { j, _ := r.gl.Job(ids[0]); return j.Status == glemu.StatusRunning })
	if j, _ := r.gl.Job(ids[0]); j.Status != glemu.StatusRunning {
		r.t.Fatalf("job is %s, want running", j.Status)
	}
	return ids
}

// removePool replaces the config's docker pool with a "large" one of a new
// runner: the docker pool's Droplets must go.
func (r *rig) removePool() {
	r.t.Helper()
	other, err := r.gl.CreateRunner(glemu.RunnerSpec{Description: "shoal large", Tags: []string{"large"}})
	if err != nil {
		r.t.Fatal(err)
	}
	r.reconfigure(fmt.Sprintf(poolTOML, "large", "large", other.ID))
	r.setup.RunnerTokens = map[string]string{"large": other.Token}
}

// idleThenUnreachable runs a short job on a new Droplet, then cuts the
// Droplet off from SSH; the drains that fail from then on are expected.
func (r *rig) idleThenUnreachable(d *daemon.Daemon) {
	r.t.Helper()
	ids := r.pipeline(time.Minute)
	r.run(d, 5*time.Minute, func(int, int) bool { return r.succeeded(ids) })
	if !r.succeeded(ids) {
		r.t.Fatal("the job did not succeed")
	}
	r.fleet.unreachable()
	r.problemsExpected = true
}

// A runner that cannot be reached over SSH is never taken for drained: after
// runnerhost gives up on it, its Droplet is shut down gracefully through
// DigitalOcean (its runner finishes its jobs first) and deleted once off.
func TestUnreachableRunnerIsShutDownGracefully(t *testing.T) {
	r := newRig(t)
	d := r.daemon()
	r.idleThenUnreachable(d)
	start := r.clk.Now()
	var deletedAt time.Time
	r.run(d, time.Hour, func(_, deleted int) bool {
		if deleted > 0 {
			deletedAt = r.clk.Now()
		}
		return deleted > 0
	})
	if deletedAt.IsZero() {
		t.Fatal("the unreachable runner's Droplet was never deleted")
	}
	if waited := deletedAt.Sub(start); waited < 10*time.Minute {
		t.Errorf("deleted %s after SSH went: before runnerhost gave up on draining it", waited)
	}
	left, err := r.doc.ListDroplets(context.Background(), reconcile.FleetTag)
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 0 {
		t.Errorf("%d Droplets left", len(left))
	}
}

// A Droplet being shut down takes no job: a job that comes meanwhile gets a
// new Droplet at once.
func TestDropletBeingShutDownIsNoCapacity(t *testing.T) {
	r := newRig(t)
	d := r.daemon()
	r.idleThenUnreachable(d)
	off := func() bool {
		ds, err := r.doc.ListDroplets(context.Background(), reconcile.FleetTag)
		if err != nil {
			t.Fatal(err)
		}
		return slices.ContainsFunc(ds, func(x cloud.Droplet) bool { return x.Status == "off" })
	}
	r.run(d, time.Hour, func(int, int) bool { return off() })
	if !off() {
		t.Fatal("the unreachable Droplet was never shut down")
	}
	srv := httptest.NewServer(d.Handler())
	defer srv.Close()
	if n := metric(t, get(t, srv.URL+"/metrics", http.StatusOK), "shoal_droplets_shutting_down"); n != 1 {
		t.Errorf("shoal_droplets_shutting_down %v, want 1", n)
	}
	next := r.pipeline(time.Minute)
	start := r.clk.Now()
	r.run(d, 30*time.Minute, func(int, int) bool { j, _ := r.gl.Job(next[0]); return j.Status != glemu.StatusPending })
	if waited := r.clk.Now().Sub(start); waited > 2*time.Minute {
		t.Errorf("a job waited %s for a runner: the Droplet being shut down counted as free capacity", waited)
	}
}

// shutdowns counts the shutdown actions asked of DigitalOcean, which answers
// them with status (http.StatusCreated: as the emulator does; else refused).
func shutdowns(status int, asked *atomic.Int64) func(http.Handler) http.Handler {
	return func(do http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			if req.Method == http.MethodPost && strings.HasSuffix(req.URL.Path, "/actions") {
				body, _ := io.ReadAll(req.Body)
				if strings.Contains(string(body), `"shutdown"`) {
					asked.Add(1)
					if status != http.StatusCreated {
						w.Header().Set("Content-Type", "application/json")
						w.WriteHeader(status)
						fmt.Fprint(w, `{"id":"forbidden","message":"You are not authorized to perform this operation."}`)
						return
					}
				}
				req.Body = io.NopCloser(bytes.NewReader(body))
			}
			do.ServeHTTP(w, req)
		})
	}
}

// A Droplet that ignores the graceful shutdown (hung: DigitalOcean issues the
// shutdown, it does not promise it succeeds), or whose shutdown DigitalOcean
// refuses, is deleted after ShutdownLimit, not paid for forever; and so with
// the daemon restarted every 2 hours, since state_dir keeps when the first
// shutdown was tried.
func TestHungDropletIsDeletedAfterTheShutdownLimit(t *testing.T) {
	for _, tc := range []struct {
		name    string
		status  int
		restart time.Duration
	}{
		{"hung", http.StatusCreated, 0},
		{"hung, daemon restarted every 2 hours", http.StatusCreated, 2 * time.Hour},
		{"shutdown refused", http.StatusForbidden, 0},
		{"shutdown refused, daemon restarted every 2 hours", http.StatusForbidden, 2 * time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var asked atomic.Int64
			r := newRigWith(t, shutdowns(tc.status, &asked))
			d := r.daemon()
			r.idleThenUnreachable(d)
			r.fleet.hung = true
			start := r.clk.Now()
			deleted := 0
			for end := start.Add(8 * time.Hour); deleted == 0 && r.clk.Now().Before(end); {
				limit := end.Sub(r.clk.Now())
				if tc.restart > 0 {
					limit = tc.restart
				}
				_, deleted = r.run(d, limit, func(_, deleted int) bool { return deleted > 0 })
				d = r.daemon()
			}
			if deleted == 0 {
				t.Fatalf("still billed 8 hours after SSH went (shutdown asked %d times)", asked.Load())
			}
			took := r.clk.Now().Sub(start)
			if took < 3*time.Hour || took > 4*time.Hour {
				t.Errorf("deleted %s after SSH went; want 3 hours after the first shutdown, asked 10 minutes in", took.Round(time.Minute))
			}
			if n := asked.Load(); n < 2 {
				t.Errorf("shutdown asked %d times; want it asked again while the Droplet stays on", n)
			}
		})
	}
}

// A runner that cannot be reached while it runs a job (here its pool was
// removed from the config, so its Droplet must go): the graceful shutdown
// waits for the job, and the Droplet is deleted once off.
func TestGracefulShutdownWaitsForTheJob(t *testing.T) {
	r := newRig(t)
	ids := r.runningJob(40 * time.Minute)
	r.fleet.unreachable()
	r.problemsExpected = true
	r.removePool()
	_, deleted := r.run(r.daemon(), 2*time.Hour, func(_, deleted int) bool { return deleted > 0 })
	if deleted == 0 {
		t.Fatal("the Droplet was never deleted")
	}
	if !r.succeeded(ids) {
		j, _ := r.gl.Job(ids[0])
		t.Fatalf("the job ended %s (%s)", j.Status, j.FailureReason)
	}
}

// A drain that failed before (a runner not answering SSH, each try waiting
// out its timeout) is tried after the Step's creates: new jobs do not wait
// behind it.
func TestCreatesComeBeforeDrainsThatFailed(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	note := func(what string) {
		mu.Lock()
		seen = append(seen, what)
		mu.Unlock()
	}
	r := newRigWith(t, func(do http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			if req.Method == http.MethodPost && req.URL.Path == "/v2/droplets" {
				note("create")
			}
			do.ServeHTTP(w, req)
		})
	})
	r.fleet.onNoRoute = func() { note("drain") }
	r.runningJob(time.Hour)
	// Its pool is removed, so its Droplet goes; but SSH to it fails.
	r.fleet.unreachable()
	r.problemsExpected = true
	r.removePool()
	d := r.daemon()
	r.run(d, 5*time.Second, func(int, int) bool { return false }) // the first drain fails
	if _, err := r.gl.CreatePipeline(r.project, []glemu.StageSpec{{Jobs: []glemu.JobSpec{{Duration: time.Minute, Tags: []string{"large"}}}}}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	seen = nil
	mu.Unlock()
	if created, _ := r.run(d, 5*time.Second, func(int, int) bool { return false }); created != 1 {
		t.Fatalf("%d Droplets created for the new job", created)
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(seen, []string{"create", "drain"}) {
		t.Errorf("the Step did %v; want the create before the drain that failed before", seen)
	}
}

// A runner reached again over SSH while its Droplet is being shut down (that
// the guest ignored) is drained the usual way: its Droplet goes once the
// drain says so, not at the shutdown limit without one.
func TestRunnerReachedAgainIsDrainedAfterAll(t *testing.T) {
	r := newRig(t)
	d := r.daemon()
	r.idleThenUnreachable(d)
	r.fleet.ignoreShutdown = true
	start := r.clk.Now()
	r.run(d, 15*time.Minute, func(int, int) bool { return false }) // shut down at 10 minutes: ignored
	r.fleet.reachable()
	_, deleted := r.run(d, time.Hour, func(_, deleted int) bool { return deleted > 0 })
	if deleted == 0 {
		t.Fatal("the Droplet was never deleted")
	}
	if took := r.clk.Now().Sub(start); took > 40*time.Minute {
		t.Errorf("deleted %s after SSH went, though reached again at 15 minutes", took.Round(time.Minute))
	}
}

// A shutdown that errors (the guest stays on, its runner undrained and
// taking jobs: GitLab lists it busy, so the policy never retires it) is
// asked again every 10 minutes, and the Droplet goes at the limit.
func TestErroredShutdownOfABusyRunnerIsAskedAgain(t *testing.T) {
	var asked atomic.Int64
	r := newRigWith(t, func(do http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			if req.Method == http.MethodPost && strings.HasSuffix(req.URL.Path, "/actions") {
				body, _ := io.ReadAll(req.Body)
				if strings.Contains(string(body), `"shutdown"`) {
					n := asked.Add(1)
					w.Header().Set("Content-Type", "application/json")
					w.WriteHeader(http.StatusCreated)
					fmt.Fprintf(w, `{"action":{"id":%d,"status":"errored","type":"shutdown","resource_type":"droplet"}}`, 900000+n)
					return
				}
				req.Body = io.NopCloser(bytes.NewReader(body))
			}
			do.ServeHTTP(w, req)
		})
	})
	d := r.daemon()
	r.idleThenUnreachable(d)
	r.fleet.hung = true // deleted undrained at the limit
	r.run(d, 30*time.Minute, func(int, int) bool { return asked.Load() > 0 })
	if asked.Load() == 0 {
		t.Fatal("no shutdown asked")
	}
	// A steady stream of 20-minute jobs: 3 pending at all times.
	deleted := 0
	for end := r.clk.Now().Add(6 * time.Hour); deleted == 0 && r.clk.Now().Before(end); {
		pending := 0
		for _, j := range r.gl.Jobs() {
			if j.Status == glemu.StatusPending {
				pending++
			}
		}
		for ; pending < 3; pending++ {
			r.pipeline(20 * time.Minute)
		}
		_, del := r.run(d, time.Minute, func(int, int) bool { return false })
		deleted += del
	}
	if n := asked.Load(); n < 3 || deleted == 0 {
		t.Errorf("6 hours after an errored shutdown: asked %d times (want every 10 minutes), %d Droplets deleted (want the unreachable one gone at the limit)", n, deleted)
	}
}

// A runner reached again is drained the usual way and left to finish its
// long job; lost again later, it gets a new graceful shutdown, and the limit
// counts from that one, not from the first.
func TestRunnerLostAgainGetsANewShutdown(t *testing.T) {
	r := newRig(t)
	ids := r.runningJob(6 * time.Hour)
	r.fleet.unreachable()
	r.fleet.ignoreShutdown = true
	r.problemsExpected = true
	// The pool is removed: its Droplet must go once its job is done.
	r.removePool()
	d := r.daemon()
	r.run(d, 15*time.Minute, func(int, int) bool { return false }) // shut down at 10 minutes: ignored
	r.fleet.reachable()
	r.run(d, 3*time.Hour, func(int, int) bool { return false }) // drained; the job runs on
	r.fleet.unreachable()
	r.run(d, 30*time.Minute, func(int, int) bool { return false })
	if j, _ := r.gl.Job(ids[0]); j.Status != glemu.StatusRunning {
		t.Errorf("the drained runner's job ended %s (%s) 30 minutes after SSH was lost again", j.Status, j.FailureReason)
	}
}

// With GitLab's API unreadable (here a revoked token), the fleet stays
// as it is for unreadable_limit (an hour by default): then it is drained down
// to min_instances, each runner finishing its jobs before its Droplet goes,
// and nothing is created; every Step fails meanwhile, so /healthz says so.
// Once GitLab answers again, jobs get Droplets again.
func TestDaemonWithGitLabUnreadableDrainsDownToMinInstances(t *testing.T) {
	r := newRig(t)
	r.reconfigure(fmt.Sprintf(poolTOML, "docker", "docker", r.setup.Config.Pools[0].RunnerID) + "min_instances = 1\n")
	d := r.daemon()
	jobs := r.pipeline(90*time.Minute, 90*time.Minute, 90*time.Minute)
	r.run(d, 5*time.Minute, func(int, int) bool {
		for _, id := range jobs {
			if j, _ := r.gl.Job(id); j.Status != glemu.StatusRunning {
				return false
			}
		}
		return true
	})
	fleet := func() []cloud.Droplet {
		ds, err := r.doc.ListDroplets(context.Background(), reconcile.FleetTag)
		if err != nil {
			t.Fatal(err)
		}
		return ds
	}
	if n := len(fleet()); n != 3 {
		t.Fatalf("%d Droplets for 3 running jobs, want 3", n)
	}

	r.glDown.Store(true)
	down := r.clk.Now()
	var drainedAt time.Time
	for r.clk.Now().Before(down.Add(2 * time.Hour)) {
		rep, err := d.Step(context.Background())
		if err == nil {
			t.Fatalf("a Step %s into the outage succeeded", r.clk.Since(down))
		}
		for _, p := range rep.Problems {
			t.Errorf("step at %s: %v", r.clk.Now().Format("15:04:05"), p)
		}
		if len(rep.Created) > 0 {
			t.Fatalf("created %d Droplets %s into the outage", len(rep.Created), r.clk.Since(down))
		}
		if len(rep.Drained) > 0 && drainedAt.IsZero() {
			drainedAt = r.clk.Now()
			if !strings.Contains(err.Error(), "drained down to min_instances") {
				t.Errorf("the Step that drained failed with %q; want it to say what it does", err)
			}
		}
		r.clk.Advance(15 * time.Second)
		r.fleet.boot()
	}
	if drainedAt.IsZero() {
		t.Fatal("no runner was drained in two hours without GitLab")
	}
	if gap := drainedAt.Sub(down); gap < time.Hour || gap > time.Hour+time.Minute {
		t.Errorf("the runners were drained %s into the outage, want just after an hour", gap)
	}
	// A Droplet deleted under its job would have failed it (glemu fails the
	// jobs of a runner that goes); the rig checks each was drained first.
	if !r.succeeded(jobs) {
		t.Fatal("a job running when the fleet was drained did not succeed")
	}
	if n := len(fleet()); n != 1 {
		t.Errorf("%d Droplets left after the outage's drain, want min_instances = 1", n)
	}
	srv := httptest.NewServer(d.Handler())
	defer srv.Close()
	get(t, srv.URL+"/healthz", http.StatusServiceUnavailable)

	// GitLab is back: a pipeline of two gets the kept runner and a new Droplet.
	r.glDown.Store(false)
	more := r.pipeline(time.Minute, time.Minute)
	created, _ := r.run(d, 10*time.Minute, func(int, int) bool { return r.succeeded(more) })
	if !r.succeeded(more) || created == 0 {
		t.Errorf("after the outage: jobs succeeded %v, %d Droplets created; want both jobs run, on a new Droplet too", r.succeeded(more), created)
	}
}
