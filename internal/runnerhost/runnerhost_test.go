package runnerhost_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pelletier/go-toml/v2"
	"go.yaml.in/yaml/v4"
	"golang.org/x/crypto/ssh"

	"github.com/shoalci/shoal/internal/clock"
	"github.com/shoalci/shoal/internal/cloud"
	"github.com/shoalci/shoal/internal/demand"
	"github.com/shoalci/shoal/internal/reconcile"
	"github.com/shoalci/shoal/internal/runnerhost"
	"github.com/shoalci/shoal/internal/runnerhost/runnerhosttest"
)

// gitlab-runner accepts a system_id from .runner_system_id only in this shape.
var systemIDRE = regexp.MustCompile(`^[sr]_[0-9a-zA-Z]{12}$`)

func TestSystemIDMatchesTheCloudInitsShell(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh to run the cloud-init's computation with")
	}
	for _, name := range []string{"shoal-docker-0a1b2c3d", "shoal-large-ffffffff", "x"} {
		id := runnerhost.SystemID(name)
		if !systemIDRE.MatchString(id) {
			t.Errorf("SystemID(%q) = %q: gitlab-runner would ignore it", name, id)
		}
		// The same line the cloud-init runs, with the name from metadata.
		out, err := exec.Command(sh, "-c", `name="$1"; printf 's_%s\n' "$(printf %s "$name" | sha256sum | cut -c1-12)"`, "sh", name).Output()
		if err != nil {
			t.Fatalf("shell: %v", err)
		}
		if got := strings.TrimSpace(string(out)); got != id {
			t.Errorf("the Droplet would write %q for %q, shoal looks for %q", got, name, id)
		}
	}
}

func TestUserData(t *testing.T) {
	key, err := runnerhost.NewHostKey()
	if err != nil {
		t.Fatal(err)
	}
	ud, err := runnerhost.UserData(key, runnerhost.RunnerSpec{GitLabURL: "https://gitlab.example.com",
		Token: `glrt-abc"def`, Concurrent: 4, Name: "docker"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(ud, "#cloud-config\n") {
		t.Fatalf("user data does not start with #cloud-config:\n%s", ud)
	}
	var doc struct {
		SSHKeys    map[string]string `yaml:"ssh_keys"`
		WriteFiles []struct {
			Path, Permissions, Content string
		} `yaml:"write_files"`
		RunCmd [][]string `yaml:"runcmd"`
	}
	if err := yaml.Unmarshal([]byte(ud), &doc); err != nil {
		t.Fatalf("user data is not YAML: %v", err)
	}

	// The host key the Droplet gets is the one shoal will accept.
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(doc.SSHKeys["ed25519_public"]))
	if err != nil {
		t.Fatalf("ed25519_public: %v", err)
	}
	priv, err := ssh.ParsePrivateKey([]byte(doc.SSHKeys["ed25519_private"]))
	if err != nil {
		t.Fatalf("ed25519_private: %v", err)
	}
	want := key.PublicKey().Marshal()
	if string(pub.Marshal()) != string(want) || string(priv.PublicKey().Marshal()) != string(want) {
		t.Error("the cloud-init's host key is not the fleet's")
	}

	files := map[string]string{}
	for _, f := range doc.WriteFiles {
		files[f.Path] = f.Content
		if f.Path == "/etc/gitlab-runner/config.toml" && f.Permissions != "0600" {
			t.Errorf("config.toml holds the runner token but is mode %s", f.Permissions)
		}
	}
	var rc struct {
		Concurrent int `toml:"concurrent"`
		Runners    []struct {
			URL, Token, Executor string
		} `toml:"runners"`
	}
	if err := toml.Unmarshal([]byte(files["/etc/gitlab-runner/config.toml"]), &rc); err != nil {
		t.Fatalf("config.toml: %v", err)
	}
	if rc.Concurrent != 4 || len(rc.Runners) != 1 || rc.Runners[0].Token != `glrt-abc"def` ||
		rc.Runners[0].URL != "https://gitlab.example.com" || rc.Runners[0].Executor != "docker" {
		t.Errorf("config.toml = %+v", rc)
	}
	dropIn := files["/etc/systemd/system/gitlab-runner.service.d/shoal.conf"]
	for _, line := range []string{"KillSignal=SIGQUIT", "KillMode=mixed", "TimeoutStopSec=infinity"} {
		if !strings.Contains(dropIn, line) {
			t.Errorf("the runner unit's drop-in lacks %s: a drain would kill jobs", line)
		}
	}
	// Every start of the runner puts the metadata block in place first.
	for _, part := range []string{"After=docker.service", "ExecStartPre=/bin/sh -c 'iptables -C DOCKER-USER -d 169.254.169.254 -j REJECT 2>/dev/null || iptables -I DOCKER-USER -d 169.254.169.254 -j REJECT'"} {
		if !strings.Contains(dropIn, part) {
			t.Errorf("the runner unit's drop-in lacks %s: job containers could read the runner token from the metadata service", part)
		}
	}
	checkDropIn(t, dropIn)
	checkCloudConfig(t, ud)
	// A graceful shutdown (what shoal does to a runner it cannot reach)
	// waits for the jobs, past systemd's 30 minutes.
	for _, target := range []string{"poweroff", "halt"} {
		if got := files["/etc/systemd/system/"+target+".target.d/shoal.conf"]; !strings.Contains(got, "JobTimeoutSec=infinity") {
			t.Errorf("%s.target's drop-in is %q; want JobTimeoutSec=infinity", target, got)
		}
	}
	// apt waits for the dpkg lock that a fresh image's apt-daily and
	// unattended-upgrades hold right after the first boot.
	if got := files["/etc/apt/apt.conf.d/90shoal-dpkg-lock"]; !regexp.MustCompile(`(?m)^DPkg::Lock::Timeout "[1-9][0-9]*";$`).MatchString(got) {
		t.Errorf("the apt configuration is %q; want a DPkg::Lock::Timeout", got)
	}

	if len(doc.RunCmd) != 1 || len(doc.RunCmd[0]) != 3 {
		t.Fatalf("runcmd = %q", doc.RunCmd)
	}
	script := doc.RunCmd[0][2]
	if sh, err := exec.LookPath("sh"); err == nil {
		if out, err := exec.Command(sh, "-n", "-c", script).CombinedOutput(); err != nil {
			t.Errorf("setup script does not parse: %v\n%s", err, out)
		}
	}
	for _, part := range []string{".runner_system_id", "systemctl enable --now gitlab-runner.service"} {
		if !strings.Contains(script, part) {
			t.Errorf("setup script lacks %q", part)
		}
	}
	// Piped into sh (no pipefail), a failed download runs nothing and succeeds.
	if pipe := regexp.MustCompile(`\|\s*(sudo\s+)?(ba|da)?sh\b`).FindString(script); pipe != "" {
		t.Errorf("setup script pipes into a shell (%q): a failed download would go unnoticed", pipe)
	}
	checkSetupScript(t, script)

	if _, err := runnerhost.UserData(key, runnerhost.RunnerSpec{GitLabURL: "https://gitlab.example.com"}); err == nil {
		t.Error("user data without a runner token was accepted")
	}
}

// checkCloudConfig validates the user data against the schema of the
// cloud-init that reads it (Debian's package has the tool; .ci/setup.d
// installs it).
func checkCloudConfig(t *testing.T, userData string) {
	t.Helper()
	ci, err := exec.LookPath("cloud-init")
	if err != nil {
		t.Log("cloud-init is not installed (apt-get install cloud-init): the user data's schema is not checked")
		return
	}
	f := filepath.Join(t.TempDir(), "user-data")
	if err := os.WriteFile(f, []byte(userData), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(ci, "schema", "--config-file", f).CombinedOutput(); err != nil {
		t.Errorf("cloud-init rejects the user data: %v\n%s", err, out)
	}
}

// checkDropIn has systemd check the drop-in on a stand-in for the packaged
// gitlab-runner unit: any unknown key or bad value is reported.
func checkDropIn(t *testing.T, dropIn string) {
	t.Helper()
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Log("systemd-analyze is not installed: the runner unit's drop-in is not checked")
		return
	}
	dir := t.TempDir()
	unit := filepath.Join(dir, "gitlab-runner.service")
	if err := os.MkdirAll(unit+".d", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(unit, []byte("[Unit]\nDescription=GitLab Runner\n[Service]\nExecStart=/bin/true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(unit+".d", "shoal.conf"), []byte(dropIn), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(sa, "verify", unit).CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Errorf("systemd-analyze verify of the drop-in: %v\n%s", err, out)
	}
}

func TestLoadHostKeyMakesItOnceAndKeepsIt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "runner_host_key")
	first, created, err := runnerhost.LoadHostKey(path)
	if err != nil || !created {
		t.Fatalf("first load: created %v, %v", created, err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("host key file mode %v, want 0600", st.Mode().Perm())
	}
	again, created, err := runnerhost.LoadHostKey(path)
	if err != nil || created {
		t.Fatalf("second load: created %v, %v", created, err)
	}
	if string(first.PublicKey().Marshal()) != string(again.PublicKey().Marshal()) {
		t.Error("a second load made a new key: Droplets made before would no longer be trusted")
	}
	if err := os.WriteFile(path, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := runnerhost.LoadHostKey(path); err == nil {
		t.Error("a broken key file was accepted")
	}
}

// What the show command prints for the runner unit, and how many jobs have
// containers running.
const (
	exited  = "LoadState=loaded\nActiveState=inactive\nJobs=0\n"
	exiting = "LoadState=loaded\nActiveState=deactivating\nJobs=0\n"
	noUnit  = "LoadState=not-found\nActiveState=inactive\n"
)

// sshServer is a runner Droplet's sshd that answers every command with reply.
type sshServer struct {
	addr string

	mu       sync.Mutex
	reply    string
	commands []string
}

func newSSHServer(t *testing.T, hostKey ssh.Signer, client ssh.PublicKey) *sshServer {
	t.Helper()
	s := &sshServer{reply: exited}
	s.addr = runnerhosttest.Serve(t, hostKey, client, func(cmd string) string {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.commands = append(s.commands, cmd)
		return s.reply
	})
	return s
}

func (s *sshServer) set(reply string) {
	s.mu.Lock()
	s.reply = reply
	s.mu.Unlock()
}

func (s *sshServer) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.commands)
}

// dialTo sends every connection to addr, whatever the Droplet's address.
func dialTo(addr string) func(ctx context.Context, network, _ string) (net.Conn, error) {
	return func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
}

func TestObserveAndDrain(t *testing.T) {
	hostKey, err := runnerhost.NewHostKey()
	if err != nil {
		t.Fatal(err)
	}
	shoalKey := runnerhosttest.NewSigner(t)
	srv := newSSHServer(t, hostKey.Signer(), shoalKey.PublicKey())
	clk := clock.NewVirtual(time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC))
	hosts, err := runnerhost.New(runnerhost.Config{Signer: shoalKey, HostKey: hostKey, Clock: clk, Dial: dialTo(srv.addr)})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	a := cloud.Droplet{ID: 1, Name: "shoal-docker-00000001", Status: "active", PublicIPv4: "203.0.113.1"}
	b := cloud.Droplet{ID: 2, Name: "shoal-docker-00000002", Status: "active", PublicIPv4: "203.0.113.2"}
	snap := func(running map[string][]int64, managers ...string) demand.Snapshot {
		s := demand.Snapshot{At: clk.Now(), RunningBySystemID: map[string][]demand.RunningJob{}}
		for _, name := range managers {
			sid := runnerhost.SystemID(name)
			s.Managers = append(s.Managers, demand.Manager{SystemID: sid, Status: "online", ContactedAt: clk.Now()})
			s.RunningBySystemID[sid] = nil
			for _, id := range running[name] {
				s.RunningBySystemID[sid] = append(s.RunningBySystemID[sid], demand.RunningJob{ID: id})
			}
		}
		return s
	}

	// The daemon starts with no fleet to adopt.
	if _, err := hosts.Observe(ctx, snap(nil), nil); err != nil {
		t.Fatal(err)
	}
	// Only a's runner has contacted GitLab, and it runs one job.
	obs, err := hosts.Observe(ctx, snap(map[string][]int64{a.Name: {7}}, a.Name), []cloud.Droplet{a, b})
	if err != nil {
		t.Fatal(err)
	}
	if st, ok := obs.Droplets[1]; !ok || !st.Registered || st.Running != 1 || !st.RegisteredAt.Equal(clk.Now()) {
		t.Errorf("a = %+v, %v: want registered now, running 1", st, ok)
	}
	if _, ok := obs.Droplets[2]; ok {
		t.Error("b is reported registered though its runner never contacted GitLab")
	}

	// The job ends: a is idle since now, with one job done.
	clk.Advance(time.Minute)
	obs, _ = hosts.Observe(ctx, snap(nil, a.Name), []cloud.Droplet{a, b})
	if st := obs.Droplets[1]; st.Running != 0 || st.JobsDone != 1 || !st.LastJobFinishedAt.Equal(clk.Now()) {
		t.Errorf("after its job a = %+v: want idle since now, one job done", st)
	}

	// A runner that never registered may run all the same: it is asked, and
	// counts as drained once it says it has exited.
	if n, err := hosts.Drain(ctx, b); err != nil || n != 0 || srv.count() != 1 {
		t.Errorf("drain of unregistered b = %d, %v after %d commands: want 0 after asking it", n, err, srv.count())
	}

	// a's runner still finishing a job it took since the last look counts as busy.
	srv.set(exiting)
	if n, err := hosts.Drain(ctx, a); err != nil || n != 1 {
		t.Errorf("drain of a while its runner exits = %d, %v: want 1", n, err)
	}
	obs, _ = hosts.Observe(ctx, snap(nil, a.Name), []cloud.Droplet{a, b})
	if !obs.Droplets[1].Draining {
		t.Error("a is not reported draining after a drain")
	}
	// A runner that does not exit though neither GitLab nor Docker lists a
	// job on it counts as drained once that has lasted GiveUpAfter (GitLab
	// read at each reconcile, as the daemon does).
	for i := range 4 {
		clk.Advance(2 * time.Minute)
		_, _ = hosts.Observe(ctx, snap(nil, a.Name), []cloud.Droplet{a, b})
		if n, err := hosts.Drain(ctx, a); err != nil || n != 1 {
			t.Errorf("drain of a runner exiting with no job for %d minutes = %d, %v: want 1", 2*(i+1), n, err)
		}
	}
	clk.Advance(2 * time.Minute)
	_, _ = hosts.Observe(ctx, snap(nil, a.Name), []cloud.Droplet{a, b})
	if n, err := hosts.Drain(ctx, a); err != nil || n != 0 {
		t.Errorf("drain of a runner stuck exiting for 10 minutes with no job = %d, %v: want 0", n, err)
	}
	srv.set(exited)
	if n, err := hosts.Drain(ctx, a); err != nil || n != 0 {
		t.Errorf("drain of a once its runner exited = %d, %v: want 0", n, err)
	}
	if srv.count() != 8 {
		t.Errorf("%d commands ran, want 8", srv.count())
	}
	srv.mu.Lock()
	cmd := srv.commands[1]
	srv.mu.Unlock()
	if !strings.HasPrefix(cmd, "systemctl stop --no-block gitlab-runner.service;") {
		t.Errorf("drain ran %q: it must stop gitlab-runner.service without waiting", cmd)
	}

	// A Droplet without the runner unit (not shoal's cloud-init) is never
	// taken for drained: "inactive" alone would say so.
	srv.set(noUnit)
	if n, err := hosts.Drain(ctx, a); err == nil || n == 0 {
		t.Errorf("drain where the unit does not exist = %d, %v: want busy and an error", n, err)
	}

	// shoal's key refused: the message says which key to fix.
	stranger, _ := runnerhost.New(runnerhost.Config{Signer: runnerhosttest.NewSigner(t), HostKey: hostKey, Clock: clk, Dial: dialTo(srv.addr)})
	_, _ = stranger.Observe(ctx, snap(nil, a.Name), []cloud.Droplet{a})
	if _, err := stranger.Drain(ctx, a); err == nil || !strings.Contains(err.Error(), "ssh_identity") {
		t.Errorf("drain with a key the Droplet refuses: %v, want a hint at ssh_identity", err)
	}

	// A Droplet presenting another host key is not trusted.
	impostor := newSSHServer(t, runnerhosttest.NewSigner(t), shoalKey.PublicKey())
	other, _ := runnerhost.New(runnerhost.Config{Signer: shoalKey, HostKey: hostKey, Clock: clk, Dial: dialTo(impostor.addr)})
	_, _ = other.Observe(ctx, snap(nil, a.Name), []cloud.Droplet{a})
	if _, err := other.Drain(ctx, a); err == nil || !strings.Contains(err.Error(), "host key is not the fleet's") {
		t.Errorf("drain through a wrong host key: %v, want a host key error", err)
	}
	if impostor.count() != 0 {
		t.Error("a command ran on a host with the wrong key")
	}

	// Drains that keep failing for GiveUpAfter give up: the Droplet is
	// unreachable (and is shut down gracefully), never drained.
	if _, err := other.Drain(ctx, a); err == nil {
		t.Error("a second failing drain succeeded before GiveUpAfter")
	}
	// Failures far apart are not one run of failures: an hour later the
	// 10 minutes start again.
	clk.Advance(time.Hour)
	if _, err := other.Drain(ctx, a); err == nil {
		t.Error("a drain failing once after an hour's gap counted as giving up")
	}
	for range 5 {
		clk.Advance(2 * time.Minute)
		_, _ = other.Drain(ctx, a)
	}
	if n, err := other.Drain(ctx, a); !errors.Is(err, reconcile.ErrUnreachable) || n == 0 {
		t.Errorf("drain failing for 10 minutes with no job listed = %d, %v: want busy and ErrUnreachable", n, err)
	}
	_, _ = other.Observe(ctx, snap(map[string][]int64{a.Name: {8}}, a.Name), []cloud.Droplet{a})
	if n, err := other.Drain(ctx, a); !errors.Is(err, reconcile.ErrUnreachable) || n != 1 {
		t.Errorf("failing drain with a job listed = %d, %v: want 1 and ErrUnreachable (never kill a job)", n, err)
	}

	// No address yet.
	noIP := cloud.Droplet{ID: 3, Name: "shoal-docker-00000003", Status: "new"}
	_, _ = hosts.Observe(ctx, snap(nil, noIP.Name), []cloud.Droplet{noIP})
	if _, err := hosts.Drain(ctx, noIP); !errors.Is(err, reconcile.ErrNoAddress) {
		t.Errorf("drain of a Droplet without an address: %v, want ErrNoAddress (the reconciler then looks it up)", err)
	}
}

// The runners of the fleet found at start are asked, read-only, whether they
// still run: one stopped before the start (a drain begun before a restart, a
// person) counts as drained, which GitLab cannot tell for two hours. A runner
// GitLab calls offline is dead, and counts as draining too.
func TestObserveAdoptsTheFleetFoundAtStart(t *testing.T) {
	clk := clock.NewVirtual(time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC))
	hostKey, err := runnerhost.NewHostKey()
	if err != nil {
		t.Fatal(err)
	}
	shoalKey := runnerhosttest.NewSigner(t)
	stopped := newSSHServer(t, hostKey.Signer(), shoalKey.PublicKey())
	running := newSSHServer(t, hostKey.Signer(), shoalKey.PublicKey())
	running.set("LoadState=loaded\nActiveState=active\n")
	sshd := map[string]string{"203.0.113.1": stopped.addr, "203.0.113.2": running.addr}
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		ip, _, _ := net.SplitHostPort(addr)
		to, ok := sshd[ip]
		if !ok {
			return nil, fmt.Errorf("no route to %s", addr)
		}
		var d net.Dialer
		return d.DialContext(ctx, network, to)
	}
	hosts, err := runnerhost.New(runnerhost.Config{Signer: shoalKey, HostKey: hostKey, Clock: clk, Dial: dial})
	if err != nil {
		t.Fatal(err)
	}
	now := clk.Now()
	registered := now.Add(-time.Hour)
	var droplets []cloud.Droplet
	snap := demand.Snapshot{At: now, RunningBySystemID: map[string][]demand.RunningJob{}}
	add := func(id int, ip, status string, contacted time.Time) {
		d := cloud.Droplet{ID: id, Name: fmt.Sprintf("shoal-docker-%08d", id), Status: "active", PublicIPv4: ip}
		droplets = append(droplets, d)
		sid := runnerhost.SystemID(d.Name)
		snap.Managers = append(snap.Managers, demand.Manager{SystemID: sid, Status: status, CreatedAt: registered, ContactedAt: contacted})
		snap.RunningBySystemID[sid] = nil
	}
	add(1, "203.0.113.1", "online", now.Add(-40*time.Minute)) // stopped before the start
	add(2, "203.0.113.2", "online", now.Add(-40*time.Minute)) // idle behind long polling
	add(3, "203.0.113.3", "online", now)                      // cannot be asked
	add(4, "203.0.113.4", "offline", now.Add(-3*time.Hour))   // dead
	obs, err := hosts.Observe(context.Background(), snap, droplets)
	if err != nil {
		t.Fatal(err)
	}
	for id, draining := range map[int]bool{1: true, 2: false, 3: false, 4: true} {
		st := obs.Droplets[id]
		if !st.Registered || st.Draining != draining || !st.RegisteredAt.Equal(registered) {
			t.Errorf("Droplet %d: %+v; want registered at %v, draining %v", id, st, registered, draining)
		}
	}
	for _, srv := range []*sshServer{stopped, running} {
		srv.mu.Lock()
		cmds := slices.Clone(srv.commands)
		srv.mu.Unlock()
		if len(cmds) != 1 || strings.Contains(cmds[0], "stop") {
			t.Errorf("asking a runner found at start ran %q; want one command that changes nothing", cmds)
		}
	}

	// Later, a runner that registers is a new one: nobody asks it anything.
	add(5, "203.0.113.1", "online", now)
	if obs, _ := hosts.Observe(context.Background(), snap, droplets); obs.Droplets[5].Draining || stopped.count() != 1 {
		t.Errorf("a runner registered after the start: %+v after %d commands; want it running, unasked", obs.Droplets[5], stopped.count())
	}
}

// When the runners found at start do not answer (SSH to the fleet is
// broken), asking them ends after AdoptWithin, and they count as running.
func TestAdoptionGivesUpOnRunnersThatDoNotAnswer(t *testing.T) {
	hostKey, err := runnerhost.NewHostKey()
	if err != nil {
		t.Fatal(err)
	}
	shoalKey := runnerhosttest.NewSigner(t)
	stuck := make(chan struct{})
	defer close(stuck) // before the server's cleanup
	addr := runnerhosttest.Serve(t, hostKey.Signer(), shoalKey.PublicKey(), func(string) string { <-stuck; return "" })
	clk := clock.NewVirtual(time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC))
	hosts, err := runnerhost.New(runnerhost.Config{Signer: shoalKey, HostKey: hostKey, Clock: clk, Dial: dialTo(addr),
		AdoptWithin: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	snap := demand.Snapshot{At: clk.Now(), RunningBySystemID: map[string][]demand.RunningJob{}}
	var droplets []cloud.Droplet
	for id := 1; id <= 25; id++ {
		d := cloud.Droplet{ID: id, Name: fmt.Sprintf("shoal-docker-%08d", id), Status: "active", PublicIPv4: "203.0.113.9"}
		droplets = append(droplets, d)
		snap.Managers = append(snap.Managers, demand.Manager{SystemID: runnerhost.SystemID(d.Name), Status: "online", ContactedAt: clk.Now()})
	}
	began := time.Now()
	obs, err := hosts.Observe(context.Background(), snap, droplets)
	if err != nil {
		t.Fatal(err)
	}
	// 25 runners, 10 at a time, would take three rounds of the 30 s timeout.
	if took := time.Since(began); took > 10*time.Second {
		t.Errorf("asking runners that do not answer took %s; want it bounded by AdoptWithin", took)
	}
	for _, d := range droplets {
		if st := obs.Droplets[d.ID]; !st.Registered || st.Draining {
			t.Errorf("Droplet %d: %+v; want it counted as a running runner", d.ID, st)
		}
	}
}
