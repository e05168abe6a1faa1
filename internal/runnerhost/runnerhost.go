// Package runnerhost is the runner side of a production fleet: the gitlab-runner
// on each Droplet. It writes the cloud-init that installs and starts the
// runner, knows each runner by the system_id it derives from the Droplet's
// name, reads from GitLab's runner managers whether a Droplet's runner has
// registered and what it runs, and drains a runner over SSH.
//
// It is the daemon's reconcile.Runners; the simulator's is internal/emurunner.
package runnerhost

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/sync/errgroup"

	"github.com/shoalci/shoal/internal/clock"
	"github.com/shoalci/shoal/internal/cloud"
	"github.com/shoalci/shoal/internal/demand"
	"github.com/shoalci/shoal/internal/reconcile"
)

// SystemID is the system_id the runner on the Droplet called name reports to
// GitLab. gitlab-runner reads it from .runner_system_id when the file holds a
// value matching ^[sr]_[0-9a-zA-Z]{12}$ (common/system_id_state.go); the
// cloud-init writes the same value, computed from the Droplet's name, since
// one create request makes up to ten Droplets with one user data.
func SystemID(name string) string {
	sum := sha256.Sum256([]byte(name))
	return "s_" + hex.EncodeToString(sum[:])[:12]
}

// ServiceName is the systemd unit that runs gitlab-runner on a runner Droplet.
const ServiceName = "gitlab-runner.service"

// jobLabel is the label gitlab-runner's Docker executor puts on every
// container of a job (build, helper, services), with the job's ID as value
// (executors/docker/internal/labels).
const jobLabel = "com.gitlab.gitlab-runner.job.id"

// jobsCommand prints Jobs=N: how many jobs have containers running on the
// Droplet, counted by their distinct job IDs. It prints nothing when Docker
// does not answer (not installed, not running, or slower than 10 s), so
// that the count is unknown rather than 0. It always exits 0.
const jobsCommand = `if j=$(timeout 10 docker ps --filter label=` + jobLabel + ` --format '{{.Label "` + jobLabel + `"}}' 2>/dev/null); ` +
	`then printf 'Jobs=%s\n' "$(printf '%s\n' "$j" | sort -u | grep -c .)"; fi`

// showCommand prints whether the runner unit exists (LoadState=loaded) and
// whether the runner runs (ActiveState=active), is finishing its jobs after
// a stop (deactivating), or has exited (inactive, failed); then, as
// jobsCommand, how many jobs have containers running. It changes nothing.
const showCommand = "systemctl show -p LoadState,ActiveState " + ServiceName + "; " + jobsCommand

// drainedDropIn is a runtime drop-in a drain leaves on the Droplet: as long
// as it exists the runner unit does not start again (its condition fails, and
// systemd skips the start without an error), whoever asks: a cloud-init still
// installing the runner (the package's postinst starts it), the setup
// script's own start, a person. Under /run it is gone after a reboot.
// (`systemctl mask --runtime` would not do: its link in /run/systemd/system
// is shadowed by the unit file `gitlab-runner install` writes to
// /etc/systemd/system, whereas drop-ins of every directory apply.)
const drainedDropIn = "/run/systemd/system/" + ServiceName + ".d/shoal-drained.conf"

// drainCommand is drainCommandFor(drainedDropIn).
var drainCommand = drainCommandFor(drainedDropIn)

// drainCommandFor stops the runner the graceful way (the unit's KillSignal
// is SIGQUIT: take no new job, finish the running ones, then exit) without
// waiting, keeps it from starting again with the drop-in at dropIn (written
// once, then systemd reloads), then shows its state as showCommand. Safe to
// repeat, and harmless where the runner is not installed yet or has exited.
func drainCommandFor(dropIn string) string {
	dir := dropIn[:strings.LastIndex(dropIn, "/")]
	return "systemctl stop --no-block " + ServiceName + "; " +
		"[ -e " + dropIn + " ] || { mkdir -p " + dir + " && " +
		"printf '[Unit]\\nConditionPathExists=!%s\\n' " + dropIn + " > " + dropIn + ".tmp && " +
		"mv " + dropIn + ".tmp " + dropIn + " && systemctl daemon-reload; }; " +
		showCommand
}

// unitStatus is what showCommand prints.
type unitStatus struct {
	load   string // LoadState: loaded, not-found, masked…; "" if not printed
	active string // ActiveState
	jobs   int    // jobs with containers running
	known  bool   // jobs is known: Docker answered
}

// parseStatus parses showCommand's output.
func parseStatus(out string) unitStatus {
	props := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), "="); ok {
			props[k] = v
		}
	}
	st := unitStatus{load: props["LoadState"], active: props["ActiveState"]}
	if n, err := strconv.Atoi(props["Jobs"]); err == nil && n >= 0 {
		st.jobs, st.known = n, true
	}
	return st
}

// exited: the runner process is not there (an unknown state counts as there).
func (st unitStatus) exited() bool {
	return st.active == "inactive" || st.active == "failed"
}

// Config says how to reach the runners.
type Config struct {
	// User is the SSH user on the Droplets (default root).
	User string
	// Signer authenticates shoal; its public key is one of the DigitalOcean
	// SSH keys put on every runner Droplet.
	Signer ssh.Signer
	// HostKey is the runner Droplets' SSH host key (see NewHostKey); its
	// private half goes into the cloud-init, its public half is the only key
	// shoal accepts from a runner Droplet.
	HostKey *HostKey
	// PrivateNetwork dials the Droplets' VPC address instead of the public one
	// (shoal running inside the same VPC).
	PrivateNetwork bool
	// Port is the SSH port (default 22).
	Port int
	// Dial opens the TCP connection (default a net.Dialer); tests point it
	// at their own server.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Timeout bounds one drain: dial, handshake and command (default 30 s).
	Timeout time.Duration
	// GiveUpAfter bounds two waits, so that no Droplet is paid for forever
	// (default 10 minutes). A Droplet whose drains keep failing that long
	// (no SSH route, a broken image) is unreachable: Drain fails with
	// reconcile.ErrUnreachable, and the reconciler shuts it down gracefully.
	// A runner that has not exited that long after its drain, with no job
	// container running on its Droplet and no job listed in GitLab all that
	// time, is stuck, and counts as drained. GitLab not listing the runner
	// for that long makes its list stale: an exited runner then counts as
	// drained at once, and a live one as busy until it exits.
	GiveUpAfter time.Duration
	// AdoptWithin bounds how long the runners found at start may take, all
	// together, to say whether they still run (default 2 minutes): when SSH
	// to the fleet is broken, the first reconcile must not wait a timeout for
	// every ten Droplets.
	AdoptWithin time.Duration
	Clock       clock.Clock
	Logger      *slog.Logger
}

// Hosts observes and drains the runners of a fleet.
type Hosts struct {
	cfg Config

	mu      sync.Mutex
	seen    map[int]*host // by Droplet ID
	started bool          // Observe has run: the fleet found at start is adopted
}

// host is what shoal has seen of one Droplet's runner: of a registered one,
// what GitLab says; of any drained one, how its drains went.
type host struct {
	registeredAt time.Time      // zero until its runner manager has contacted GitLab
	running      map[int64]bool // job IDs at the last look
	lookedAt     time.Time      // the last look: GitLab listed its manager
	done         int
	lastFinished time.Time
	drainedAt    time.Time // when it was first drained (zero: not draining)
	failing      streak    // drains that failed
	idle         streak    // drains that found it alive with no job
	warned       bool      // that it cannot be told stuck was logged
}

// streak is a run of drains alike, one after another: none more than
// failRun after the one before.
type streak struct{ since, last time.Time }

// extend adds a drain at now to the streak, or starts one, and says how
// long the streak has lasted.
func (s *streak) extend(now time.Time) time.Duration {
	if s.last.IsZero() || now.Sub(s.last) > failRun {
		s.since = now
	}
	s.last = now
	return now.Sub(s.since)
}

// end ends the streak: a drain unlike it came.
func (s *streak) end() { *s = streak{} }

// adoptAtOnce is how many runners found at start are asked at once whether
// they still run.
const adoptAtOnce = 10

// failRun is the longest gap between two failed drains (or two finding the
// runner alive with no job) that still counts as one after another: the
// reconciler drains a retiring Droplet again every interval.
const failRun = 2 * time.Minute

// New returns Hosts.
func New(cfg Config) (*Hosts, error) {
	if cfg.Signer == nil {
		return nil, errors.New("runnerhost: no SSH key to drain runners with: configure one whose public half is on the runner Droplets")
	}
	if cfg.HostKey == nil {
		return nil, errors.New("runnerhost: no host key for the runner Droplets")
	}
	if cfg.User == "" {
		cfg.User = "root"
	}
	if cfg.Port == 0 {
		cfg.Port = 22
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.Dial == nil {
		var d net.Dialer
		cfg.Dial = d.DialContext
	}
	if cfg.GiveUpAfter == 0 {
		cfg.GiveUpAfter = 10 * time.Minute
	}
	if cfg.AdoptWithin == 0 {
		cfg.AdoptWithin = 2 * time.Minute
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Hosts{cfg: cfg, seen: map[int]*host{}}, nil
}

var _ reconcile.Runners = (*Hosts)(nil)

// Observe reports each Droplet's runner from GitLab's view of its runner
// manager: registered once the manager has contacted GitLab, running what
// GitLab lists as running on it. A job that leaves that list has finished,
// which dates the runner's idleness. A runner GitLab calls offline (no
// contact for two hours) is dead, and counts as draining.
//
// On the first call, the runners of the fleet found at start are asked over
// SSH whether they still run (see stopped).
func (h *Hosts) Observe(ctx context.Context, snap demand.Snapshot, droplets []cloud.Droplet) (reconcile.Observation, error) {
	now := h.cfg.Clock.Now()
	contacted := map[string]demand.Manager{}
	for _, m := range snap.Managers {
		if !m.ContactedAt.IsZero() {
			contacted[m.SystemID] = m
		}
	}
	h.mu.Lock()
	first := !h.started
	h.started = true
	h.mu.Unlock()
	var stopped map[int]bool // of the fleet found at start
	if first {
		var found []cloud.Droplet
		for _, d := range droplets {
			if _, ok := contacted[SystemID(d.Name)]; ok {
				found = append(found, d)
			}
		}
		stopped = h.stopped(ctx, found)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	obs := reconcile.Observation{Droplets: make(map[int]reconcile.RunnerStatus, len(droplets))}
	alive := make(map[int]bool, len(droplets))
	for _, d := range droplets {
		alive[d.ID] = true
		sid := SystemID(d.Name)
		hs := h.seen[d.ID]
		m, ok := contacted[sid]
		if !ok {
			continue
		}
		if hs == nil || hs.registeredAt.IsZero() {
			// Registered when GitLab first heard from it, or now, the first
			// time shoal sees it, if GitLab does not say. A Droplet drained
			// before its runner registered keeps its drain.
			if hs == nil {
				hs = &host{}
				h.seen[d.ID] = hs
			}
			hs.registeredAt, hs.running = m.CreatedAt, map[int64]bool{}
			if m.CreatedAt.IsZero() || m.CreatedAt.After(now) {
				hs.registeredAt = now
			}
			if stopped[d.ID] && hs.drainedAt.IsZero() {
				hs.drainedAt = now
				h.cfg.Logger.Info("a runner found at start was stopped before it; its Droplet goes once its jobs end", "droplet", d.Name)
			}
		}
		hs.lookedAt = now
		running := map[int64]bool{}
		for _, j := range snap.RunningBySystemID[sid] {
			running[j.ID] = true
		}
		for id := range hs.running {
			if !running[id] {
				hs.done++
				hs.lastFinished = now
			}
		}
		hs.running = running
		obs.Droplets[d.ID] = reconcile.RunnerStatus{Registered: true, RegisteredAt: hs.registeredAt,
			Draining: !hs.drainedAt.IsZero() || m.Status != "online", Running: len(running), JobsDone: hs.done, LastJobFinishedAt: hs.lastFinished}
	}
	for id := range h.seen {
		if !alive[id] {
			delete(h.seen, id) // deleted Droplets
		}
	}
	return obs, nil
}

// stopped asks the runners of the fleet found at start, over SSH and without
// changing anything, whether they still run, and returns the Droplets of
// those that do not. One stopped before the start (a
// drain this daemon began before a restart, a person, a crash) takes no job:
// it counts as drained, so the policy neither counts on its slots nor keeps
// its Droplet. GitLab cannot tell: it calls a runner online for two hours
// after its last contact, and behind Workhorse's long polling an idle runner
// may not reach GitLab's API servers, which date that contact, for an hour.
// A runner that cannot be asked counts as running.
func (h *Hosts) stopped(ctx context.Context, ds []cloud.Droplet) map[int]bool {
	ctx, cancel := context.WithTimeout(ctx, h.cfg.AdoptWithin)
	defer cancel()
	stopped := make([]bool, len(ds))
	var g errgroup.Group
	g.SetLimit(adoptAtOnce)
	for i, d := range ds {
		g.Go(func() error {
			out, err := h.run(ctx, d, showCommand)
			if err != nil {
				h.cfg.Logger.Warn("cannot ask a runner found at start whether it runs; it counts as running", "droplet", d.Name, "error", err)
				return nil
			}
			st := parseStatus(out)
			stopped[i] = st.load == "loaded" && st.active != "active" && st.active != "activating" && st.active != "reloading"
			return nil
		})
	}
	_ = g.Wait()
	out := map[int]bool{}
	for i, d := range ds {
		if stopped[i] {
			out[d.ID] = true
		}
	}
	return out
}

// Drain stops the Droplet's runner over SSH (drainCommand): it takes no new
// job, exits when its jobs are done, and does not start again. While the
// runner process is there, the count is at least one, at least what GitLab
// listed running on it at the last Observe (a job taken since that look is
// never cut off), and at least how many jobs have containers running on the
// Droplet (GitLab lists only the jobs of projects shoal's token can see).
//
// A Droplet whose runner never registered is asked too: it may run a runner
// shoal cannot see (its pool was removed from the config, or the pool uses
// another runner now), with jobs. Where the runner is not installed yet (a
// cloud-init still at work) or has exited, it counts as drained at once: the
// drain keeps it from starting.
//
// A drain failing for GiveUpAfter fails with reconcile.ErrUnreachable; a
// runner alive GiveUpAfter after its drain, with neither a job container nor
// a job in GitLab all that time, is stuck and counts as drained. Nothing else
// counts an unanswered runner as drained. When GitLab has not listed the
// runner for GiveUpAfter (GitLab down, or refusing shoal), its list is
// stale: an exited runner is drained, and a live one busy.
func (h *Hosts) Drain(ctx context.Context, d cloud.Droplet) (int, error) {
	h.mu.Lock()
	hs := h.seen[d.ID]
	if hs == nil {
		// Never registered: its drain is remembered all the same. Observe
		// forgets it with the Droplet.
		hs = &host{}
		h.seen[d.ID] = hs
	}
	registered, running := !hs.registeredAt.IsZero(), len(hs.running)
	// GitLab has not listed the runner for long (it is down, or refuses
	// shoal): what it last said runs there is stale, and jobs taken since
	// are unknown.
	stale := registered && h.cfg.Clock.Since(hs.lookedAt) >= h.cfg.GiveUpAfter
	h.mu.Unlock()
	out, err := h.run(ctx, d, drainCommand)
	now := h.cfg.Clock.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	if err != nil {
		if ctx.Err() != nil {
			return running, fmt.Errorf("drain runner on %s: %w", d.Name, err) // shoal stopping
		}
		hs.idle.end()
		if failing := hs.failing.extend(now); failing >= h.cfg.GiveUpAfter {
			// The runner may still be taking jobs: only a graceful shutdown
			// of the Droplet stops it safely now.
			h.cfg.Logger.Warn("cannot reach the runner to drain it; its Droplet is to be shut down gracefully",
				"droplet", d.Name, "failing_for", failing.Round(time.Second), "error", err)
			return max(running, 1), fmt.Errorf("drain runner on %s: failing for %s (last: %v): %w",
				d.Name, failing.Round(time.Second), err, reconcile.ErrUnreachable)
		}
		return max(running, 1), fmt.Errorf("drain runner on %s: %w", d.Name, err)
	}
	hs.failing.end()
	if hs.drainedAt.IsZero() {
		hs.drainedAt = now
	}
	st := parseStatus(out)
	if !registered && st.exited() && (st.load == "not-found" || st.load == "loaded" || st.load == "masked") {
		// Not installed yet, or exited: it runs no job, and the drain keeps
		// it from starting before its Droplet is gone.
		return 0, nil
	}
	if st.load != "loaded" && (registered || st.load == "") {
		return max(running, st.jobs, 1), fmt.Errorf("drain runner on %s: there is no loaded %s on it (LoadState=%q): shoal's runners need the cloud-init shoal writes; delete the Droplet by hand once its jobs are done", d.Name, ServiceName, st.load)
	}
	if st.exited() {
		// Exited: GitLab may still list a job it is closing; wait for that,
		// unless GitLab's list is stale: the runner exits only once its jobs
		// are done.
		hs.idle.end()
		if stale {
			return 0, nil
		}
		return running, nil
	}
	// activating, active, deactivating, reloading: the runner has not exited.
	busy := max(running, st.jobs, 1)
	// With GitLab's list stale, a live runner may be about to start a job
	// it took since (pulling its image, no container yet): it is busy
	// until it exits.
	if running > 0 || !st.known || st.jobs > 0 || stale {
		hs.idle.end()
		if !st.known && running == 0 && !hs.warned && now.Sub(hs.drainedAt) >= h.cfg.GiveUpAfter {
			hs.warned = true
			h.cfg.Logger.Warn("the runner has not exited since it was drained, and Docker on its Droplet does not say what runs; it counts as busy until it exits",
				"droplet", d.Name, "drained_for", now.Sub(hs.drainedAt).Round(time.Second))
		}
		return busy, nil
	}
	// Alive, with no job container and no job in GitLab.
	if idle := hs.idle.extend(now); idle >= h.cfg.GiveUpAfter && now.Sub(hs.drainedAt) >= h.cfg.GiveUpAfter {
		h.cfg.Logger.Warn("the runner has not exited since it was drained, yet no job has run on it for a while; it counts as drained",
			"droplet", d.Name, "drained_for", now.Sub(hs.drainedAt).Round(time.Second), "idle_for", idle.Round(time.Second))
		return 0, nil
	}
	return busy, nil
}

var errHostKey = errors.New("host key mismatch")

// run runs one command on the Droplet and returns its standard output.
func (h *Hosts) run(ctx context.Context, d cloud.Droplet, cmd string) (string, error) {
	ip := d.PublicIPv4
	if h.cfg.PrivateNetwork {
		ip = d.PrivateIPv4
	}
	if ip == "" {
		return "", fmt.Errorf("ssh: %w", reconcile.ErrNoAddress)
	}
	ctx, cancel := context.WithTimeout(ctx, h.cfg.Timeout)
	defer cancel()
	addr := net.JoinHostPort(ip, fmt.Sprint(h.cfg.Port))
	conn, err := h.cfg.Dial(ctx, "tcp", addr)
	if err != nil {
		return "", fmt.Errorf("dial %s: %w", addr, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	defer conn.Close()
	cc, chans, reqs, err := ssh.NewClientConn(conn, addr, &ssh.ClientConfig{
		User: h.cfg.User,
		Auth: []ssh.AuthMethod{ssh.PublicKeys(h.cfg.Signer)},
		HostKeyCallback: func(_ string, _ net.Addr, key ssh.PublicKey) error {
			if !bytes.Equal(key.Marshal(), h.cfg.HostKey.PublicKey().Marshal()) {
				return errHostKey
			}
			return nil
		},
		Timeout: h.cfg.Timeout,
	})
	if err != nil {
		switch {
		case errors.Is(err, errHostKey):
			return "", fmt.Errorf("ssh %s: the Droplet's host key is not the fleet's (%s in [daemon] state_dir): %w", addr, "runner_host_key", err)
		case strings.Contains(err.Error(), "unable to authenticate"):
			return "", fmt.Errorf("ssh %s@%s: shoal's key was refused: [daemon] ssh_identity must be the private half of one of [daemon] ssh_keys: %w", h.cfg.User, addr, err)
		}
		return "", fmt.Errorf("ssh %s@%s: %w", h.cfg.User, addr, err)
	}
	client := ssh.NewClient(cc, chans, reqs)
	defer client.Close()
	sess, err := client.NewSession()
	if err != nil {
		return "", fmt.Errorf("ssh session on %s: %w", addr, err)
	}
	defer sess.Close()
	var out, errOut bytes.Buffer
	sess.Stdout, sess.Stderr = &out, &errOut
	if err := sess.Run(cmd); err != nil {
		return "", fmt.Errorf("run %q on %s: %w: %s", cmd, addr, err, strings.TrimSpace(errOut.String()))
	}
	return out.String(), nil
}
