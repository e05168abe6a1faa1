package runnerhost_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/shoalci/shoal/internal/clock"
	"github.com/shoalci/shoal/internal/cloud"
	"github.com/shoalci/shoal/internal/demand"
	"github.com/shoalci/shoal/internal/reconcile"
	"github.com/shoalci/shoal/internal/runnerhost"
	"github.com/shoalci/shoal/internal/runnerhost/runnerhosttest"
)

// droplet is a runner Droplet behind its sshd: the commands shoal sends run
// in /bin/sh as on the Droplet, with stand-ins for systemctl (show prints
// the unit state the test sets; every call is logged) and docker (ps prints
// the job label of each container the test sets, or fails, or docker is not
// installed). The drop-in directory under /run is moved into a temporary
// directory.
type droplet struct {
	t    *testing.T
	root string // the Droplet's files
	bin  string // its PATH
	addr string
}

// The stand-ins. A stop of a unit that is not loaded fails as systemctl's does.
const (
	fakeSystemctl = `#!/bin/sh
echo "$*" >> "$DROPLET/systemctl.log"
case "$1" in
show) cat "$DROPLET/unit" ;;
stop) grep -q LoadState=loaded "$DROPLET/unit" || { echo "Failed to stop gitlab-runner.service: Unit gitlab-runner.service not loaded." >&2; exit 5; } ;;
esac
`
	fakeDocker = `#!/bin/sh
echo "$*" >> "$DROPLET/docker.log"
if [ -e "$DROPLET/docker-fails" ]; then
  echo "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?" >&2
  exit 1
fi
cat "$DROPLET/containers"
`
)

func newDroplet(t *testing.T, hostKey ssh.Signer, client ssh.PublicKey) *droplet {
	t.Helper()
	if _, err := os.Stat("/bin/sh"); err != nil {
		t.Skip("no /bin/sh to run the Droplet's commands in")
	}
	d := &droplet{t: t, root: t.TempDir()}
	d.bin = filepath.Join(d.root, "bin")
	if err := os.Mkdir(d.bin, 0o755); err != nil {
		t.Fatal(err)
	}
	// Only these tools, whatever else the test machine has (docker, systemd).
	for _, tool := range []string{"cat", "grep", "mkdir", "mv", "sort", "timeout"} {
		p, err := exec.LookPath(tool)
		if err != nil {
			t.Skipf("no %s to run the Droplet's commands with", tool)
		}
		if err := os.Symlink(p, filepath.Join(d.bin, tool)); err != nil {
			t.Fatal(err)
		}
	}
	d.write("bin/systemctl", fakeSystemctl, 0o755)
	d.write("bin/docker", fakeDocker, 0o755)
	d.setUnit("loaded", "active")
	d.setContainers()
	dropInDir := path.Dir(runnerhost.DrainedDropIn)
	d.addr = runnerhosttest.ServeStatus(t, hostKey, client, func(cmd string) (string, uint32) {
		cmd = strings.ReplaceAll(cmd, dropInDir, filepath.Join(d.root, dropInDir))
		c := exec.Command("/bin/sh", "-c", cmd)
		c.Env = []string{"PATH=" + d.bin, "DROPLET=" + d.root}
		out, err := c.Output()
		var exit *exec.ExitError
		switch {
		case errors.As(err, &exit):
			return string(out), uint32(exit.ExitCode())
		case err != nil:
			return "", 255
		}
		return string(out), 0
	})
	return d
}

func (d *droplet) write(name, content string, mode os.FileMode) {
	d.t.Helper()
	if err := os.WriteFile(filepath.Join(d.root, name), []byte(content), mode); err != nil {
		d.t.Fatal(err)
	}
}

// setUnit is what systemctl show says of gitlab-runner.service.
func (d *droplet) setUnit(load, active string) {
	d.write("unit", "LoadState="+load+"\nActiveState="+active+"\n", 0o644)
}

// setContainers runs one container for each job ID (a job with services
// has several).
func (d *droplet) setContainers(jobIDs ...string) {
	var b strings.Builder
	for _, id := range jobIDs {
		b.WriteString(id + "\n")
	}
	d.write("containers", b.String(), 0o644)
	_ = os.Remove(filepath.Join(d.root, "docker-fails"))
}

func (d *droplet) dockerFails() { d.write("docker-fails", "", 0o644) }

func (d *droplet) log(name string) string {
	b, _ := os.ReadFile(filepath.Join(d.root, name))
	return string(b)
}

// dropIn is the drained drop-in as the Droplet has it ("" if none), with
// the paths it names as on the Droplet.
func (d *droplet) dropIn() string {
	b, err := os.ReadFile(filepath.Join(d.root, runnerhost.DrainedDropIn))
	if err != nil {
		return ""
	}
	return strings.ReplaceAll(string(b), d.root, "")
}

// fixture is shoal's Hosts against one Droplet, in virtual time.
type fixture struct {
	clk   *clock.Virtual
	hosts *runnerhost.Hosts
	d     cloud.Droplet
}

func newFixture(t *testing.T, dial func(ctx context.Context, network, addr string) (net.Conn, error), hostKey *runnerhost.HostKey, shoalKey ssh.Signer) *fixture {
	t.Helper()
	clk := clock.NewVirtual(time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC))
	hosts, err := runnerhost.New(runnerhost.Config{Signer: shoalKey, HostKey: hostKey, Clock: clk, Dial: dial})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{clk: clk, hosts: hosts, d: cloud.Droplet{ID: 1, Name: "shoal-docker-00000001", Status: "active", PublicIPv4: "203.0.113.1"}}
	// The daemon starts with no fleet to adopt.
	if _, err := hosts.Observe(context.Background(), demand.Snapshot{At: clk.Now()}, nil); err != nil {
		t.Fatal(err)
	}
	return f
}

// register has GitLab list the Droplet's runner manager, with these jobs
// running on it.
func (f *fixture) register(t *testing.T, jobs ...int64) {
	t.Helper()
	sid := runnerhost.SystemID(f.d.Name)
	snap := demand.Snapshot{At: f.clk.Now(), RunningBySystemID: map[string][]demand.RunningJob{sid: nil},
		Managers: []demand.Manager{{SystemID: sid, Status: "online", ContactedAt: f.clk.Now()}}}
	for _, id := range jobs {
		snap.RunningBySystemID[sid] = append(snap.RunningBySystemID[sid], demand.RunningJob{ID: id})
	}
	obs, err := f.hosts.Observe(context.Background(), snap, []cloud.Droplet{f.d})
	if err != nil || !obs.Droplets[f.d.ID].Registered {
		t.Fatalf("observe: %+v, %v", obs.Droplets[f.d.ID], err)
	}
}

func (f *fixture) drain() (int, error) { return f.hosts.Drain(context.Background(), f.d) }

func keys(t *testing.T) (*runnerhost.HostKey, ssh.Signer) {
	t.Helper()
	hostKey, err := runnerhost.NewHostKey()
	if err != nil {
		t.Fatal(err)
	}
	return hostKey, runnerhosttest.NewSigner(t)
}

// A Droplet that cannot be reached for GiveUpAfter may still be taking jobs,
// whatever GitLab lists on it: it is never taken for drained. Drain says it
// is unreachable, so the reconciler shuts it down gracefully. The same holds
// for a Droplet whose runner never registered.
func TestDrainOfAnUnreachableDropletNeverCountsItDrained(t *testing.T) {
	noRoute := func(context.Context, string, string) (net.Conn, error) { return nil, errors.New("no route to host") }
	for _, registered := range []bool{true, false} {
		t.Run(fmt.Sprintf("registered=%v", registered), func(t *testing.T) {
			hostKey, shoalKey := keys(t)
			f := newFixture(t, noRoute, hostKey, shoalKey)
			if registered {
				f.register(t) // GitLab lists no job on it
			}
			began := f.clk.Now()
			for range 16 {
				n, err := f.drain()
				failing := f.clk.Now().Sub(began)
				switch {
				case err == nil:
					t.Fatalf("after %s of failures a drain = %d, nil: an unreachable runner counted as drained", failing, n)
				case failing < 10*time.Minute && errors.Is(err, reconcile.ErrUnreachable):
					t.Fatalf("after %s of failures: %v; want an ordinary failure before GiveUpAfter", failing, err)
				case failing >= 10*time.Minute && !errors.Is(err, reconcile.ErrUnreachable):
					t.Fatalf("after %s of failures: %v; want reconcile.ErrUnreachable", failing, err)
				}
				f.clk.Advance(time.Minute)
			}
		})
	}
}

// While the runner lives, the jobs whose containers run on its Droplet count,
// even those GitLab does not list (projects shoal's token cannot see), for as
// long as they run. A runner alive with no job container and no job listed
// in GitLab for GiveUpAfter is stuck, and counts as drained; one whose
// Droplet cannot say what runs (Docker not answering) never does.
func TestDrainCountsTheJobContainersOnTheDroplet(t *testing.T) {
	hostKey, shoalKey := keys(t)
	d := newDroplet(t, hostKey.Signer(), shoalKey.PublicKey())
	f := newFixture(t, dialTo(d.addr), hostKey, shoalKey)
	f.register(t) // GitLab lists no job on it

	// Two jobs GitLab does not show, one with a service container.
	d.setUnit("loaded", "deactivating")
	d.setContainers("41", "41", "42")
	for minute := 0; minute <= 20; minute++ {
		if n, err := f.drain(); err != nil || n != 2 {
			t.Fatalf("minute %d of a drain with two jobs' containers running: %d, %v; want 2", minute, n, err)
		}
		f.clk.Advance(time.Minute)
	}
	if got := d.log("docker.log"); !strings.Contains(got, "ps --filter label=com.gitlab.gitlab-runner.job.id ") {
		t.Errorf("docker was asked %q; want the containers labelled with a job ID", got)
	}

	// Docker stops answering: what runs is unknown, so the runner stays busy.
	d.dockerFails()
	for minute := 0; minute <= 20; minute++ {
		if n, err := f.drain(); err != nil || n < 1 {
			t.Fatalf("minute %d of a drain where docker fails: %d, %v; want busy", minute, n, err)
		}
		f.clk.Advance(time.Minute)
	}

	// Its jobs have ended, yet the runner does not exit: stuck once no job
	// has run for GiveUpAfter, not before (GitLab read at each reconcile).
	d.setContainers()
	for minute := 0; minute < 10; minute++ {
		f.register(t)
		if n, err := f.drain(); err != nil || n < 1 {
			t.Fatalf("minute %d without a job container: %d, %v; want busy until 10 minutes have passed", minute, n, err)
		}
		f.clk.Advance(time.Minute)
	}
	f.register(t)
	if n, err := f.drain(); err != nil || n != 0 {
		t.Errorf("a runner alive 10 minutes with no job container and no job listed: %d, %v; want 0 (stuck)", n, err)
	}
}

// A runner that has exited runs no job, but GitLab may still list one it is
// closing: the drain waits for GitLab. Not for ever: a list GitLab has not
// refreshed for GiveUpAfter (GitLab down, or refusing shoal's token) is
// stale, and an exited runner is drained, until GitLab is read again. A
// live runner with a stale list stays busy, container or not: it may have
// taken a job since, still pulling its image.
func TestDrainWithAStaleGitLab(t *testing.T) {
	hostKey, shoalKey := keys(t)
	d := newDroplet(t, hostKey.Signer(), shoalKey.PublicKey())
	f := newFixture(t, dialTo(d.addr), hostKey, shoalKey)
	f.register(t, 7) // GitLab's last word: job 7 runs there

	d.setUnit("loaded", "deactivating")
	d.setContainers()
	for minute := 0; minute <= 30; minute++ {
		if n, err := f.drain(); err != nil || n != 1 {
			t.Fatalf("minute %d, the runner alive with no container, GitLab unread: %d, %v; want 1", minute, n, err)
		}
		f.clk.Advance(time.Minute)
	}
	d.setUnit("loaded", "inactive")
	if n, err := f.drain(); err != nil || n != 0 {
		t.Errorf("GitLab unread for 30 minutes, the runner exited: %d, %v; want 0", n, err)
	}
	f.register(t, 7)
	for minute := 0; minute < 10; minute++ {
		if n, err := f.drain(); err != nil || n != 1 {
			t.Fatalf("minute %d after GitLab listed job 7 on the exited runner again: %d, %v; want 1", minute, n, err)
		}
		f.clk.Advance(time.Minute)
	}
	if n, err := f.drain(); err != nil || n != 0 {
		t.Errorf("GitLab unread for 10 minutes since, the runner exited: %d, %v; want 0", n, err)
	}
}

// A Droplet whose runner shoal never saw register may run one all the same
// (its pool was removed from the config, or uses another runner now), with
// jobs: it is drained like any other, and counts as busy until its runner
// has exited.
func TestDrainOfAnUnregisteredRunnerStopsIt(t *testing.T) {
	hostKey, shoalKey := keys(t)
	d := newDroplet(t, hostKey.Signer(), shoalKey.PublicKey())
	f := newFixture(t, dialTo(d.addr), hostKey, shoalKey)

	d.setUnit("loaded", "active")
	d.setContainers("77")
	if n, err := f.drain(); err != nil || n != 1 {
		t.Errorf("drain of an unregistered Droplet running a job: %d, %v; want 1", n, err)
	}
	if got := d.log("systemctl.log"); !strings.Contains(got, "stop --no-block gitlab-runner.service\n") {
		t.Errorf("systemctl ran %q; want the runner stopped", got)
	}
	d.setUnit("loaded", "deactivating")
	d.setContainers()
	f.clk.Advance(time.Minute)
	if n, err := f.drain(); err != nil || n != 1 {
		t.Errorf("drain while the runner exits: %d, %v; want 1", n, err)
	}
	d.setUnit("loaded", "inactive")
	f.clk.Advance(time.Minute)
	if n, err := f.drain(); err != nil || n != 0 {
		t.Errorf("drain once the runner exited: %d, %v; want 0", n, err)
	}
	if d.dropIn() == "" {
		t.Error("the drained runner may be started again: no drop-in keeps it down")
	}
}

// A Droplet whose cloud-init has not installed the runner yet runs no job:
// it counts as drained at once, and the runner the cloud-init is about to
// install and start must not start before the Droplet is deleted.
func TestDrainOfADropletWithoutItsRunnerYetKeepsItFromStarting(t *testing.T) {
	hostKey, shoalKey := keys(t)
	d := newDroplet(t, hostKey.Signer(), shoalKey.PublicKey())
	f := newFixture(t, dialTo(d.addr), hostKey, shoalKey)
	d.setUnit("not-found", "inactive")
	for range 2 {
		if n, err := f.drain(); err != nil || n != 0 {
			t.Fatalf("drain of a Droplet without the runner unit yet: %d, %v; want 0", n, err)
		}
	}
	dropIn := d.dropIn()
	if dropIn == "" {
		t.Fatal("no drop-in keeps the runner the cloud-init installs from starting")
	}
	if got := strings.Count(d.log("systemctl.log"), "daemon-reload"); got != 1 {
		t.Errorf("systemd was reloaded %d times in two drains; want once, when the drop-in is new", got)
	}
	checkStartSkipped(t, dropIn)
}

// checkStartSkipped has systemd evaluate the drained drop-in on a stand-in
// for the unit `gitlab-runner install` writes to /etc/systemd/system: with
// the drop-in in place, a start is skipped.
func checkStartSkipped(t *testing.T, dropIn string) {
	t.Helper()
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Log("systemd-analyze is not installed: the drained drop-in is not checked")
		return
	}
	root := t.TempDir()
	etc := filepath.Join(root, "etc/systemd/system")
	run := filepath.Join(root, "run/systemd/system")
	unit := "[Unit]\nDescription=GitLab Runner\n[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n"
	// The condition names the drop-in by its path on the Droplet: here,
	// under root.
	dropIn = strings.ReplaceAll(dropIn, runnerhost.DrainedDropIn, filepath.Join(root, runnerhost.DrainedDropIn))
	for name, content := range map[string]string{
		filepath.Join(etc, "gitlab-runner.service"):   unit,
		filepath.Join(root, runnerhost.DrainedDropIn): dropIn,
	} {
		if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(sa, "condition", "--unit=gitlab-runner.service")
	cmd.Env = append(os.Environ(), "SYSTEMD_UNIT_PATH="+etc+":"+run+":")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "ConditionPathExists=!") {
		t.Errorf("with the drained drop-in, the runner unit's conditions: %v\n%s\nwant them failed (the start skipped)", err, out)
	}
	verify := exec.Command(sa, "verify", filepath.Join(etc, "gitlab-runner.service"))
	verify.Env = cmd.Env
	if out, err := verify.CombinedOutput(); err != nil || len(out) > 0 {
		t.Errorf("systemd-analyze verify with the drained drop-in: %v\n%s", err, out)
	}
}

// The Droplet's answer is parsed robustly: jobs are counted once however
// many containers they have, and Docker failing or missing leaves the count
// unknown (busy), never 0, without failing the command.
func TestDrainCommandOnTheDroplet(t *testing.T) {
	hostKey, shoalKey := keys(t)
	d := newDroplet(t, hostKey.Signer(), shoalKey.PublicKey())
	f := newFixture(t, dialTo(d.addr), hostKey, shoalKey)
	d.setUnit("loaded", "active")
	for _, c := range []struct {
		name  string
		setup func()
		want  int
	}{
		{"three jobs, one with two services", func() { d.setContainers("5", "5", "5", "6", "7") }, 3},
		{"no job", func() { d.setContainers() }, 1},
		{"docker fails", d.dockerFails, 1},
		{"docker not installed", func() { _ = os.Remove(filepath.Join(d.bin, "docker")) }, 1},
	} {
		c.setup()
		if n, err := f.drain(); err != nil || n != c.want {
			t.Errorf("%s: drain = %d, %v; want %d", c.name, n, err, c.want)
		}
	}
	if !strings.HasPrefix(d.log("systemctl.log"), "stop --no-block gitlab-runner.service\n") {
		t.Errorf("systemctl ran %q; want the stop first", d.log("systemctl.log"))
	}
}
