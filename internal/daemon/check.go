package daemon

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	gitlab "gitlab.com/gitlab-org/api/client-go"
	"golang.org/x/crypto/ssh"

	"github.com/shoalci/shoal/internal/clock"
	"github.com/shoalci/shoal/internal/cloud"
	"github.com/shoalci/shoal/internal/reconcile"
	"github.com/shoalci/shoal/internal/tags"
)

// Finding is one thing Check looked at: what it found, and whether that is
// fine; a problem says what to do.
type Finding struct {
	OK   bool
	Text string
}

// Check looks at what the daemon needs from DigitalOcean and GitLab, changing
// nothing, and reports everything it finds, problems included, so that a
// first start fails for none of them: the account and its Droplet limit, the
// SSH keys and shoal's own among them, each pool's region, size and image,
// each pool's GitLab runner (tags, paused, token), GitLab's queue as the
// daemon reads it, and the state directory. Whether the DigitalOcean token
// may create Droplets only a create can tell.
func Check(ctx context.Context, s Setup) ([]Finding, error) {
	cfg := s.Config
	if err := cfg.DaemonReady(s.File); err != nil {
		return nil, err
	}
	if s.Clock == nil {
		s.Clock = clock.Real{}
	}
	// One look reads every project: the daemon's budget of job-list
	// requests spreads its reads over polls, which would leave some out here.
	one := *s.Config
	one.GitLab.JobsAPIPerMinute = -1
	s.Config = &one
	do, gl, src, err := s.clients()
	if err != nil {
		return nil, err
	}
	var out []Finding
	ok := func(format string, a ...any) { out = append(out, Finding{true, fmt.Sprintf(format, a...)}) }
	bad := func(format string, a ...any) { out = append(out, Finding{false, fmt.Sprintf(format, a...)}) }

	// What needs no API call.
	for _, p := range cfg.Pools {
		switch tok := s.RunnerTokens[p.Name]; {
		case tok == "":
			bad("pool %s: $%s is not set: export the runner's authentication token (glrt-…)", p.Name, p.TokenEnv())
		case !strings.Contains(tok, "glrt-"):
			bad("pool %s: $%s is not a runner authentication token (glrt-…): create the runner in GitLab and copy the token it shows once", p.Name, p.TokenEnv())
		}
	}
	checkStateDir(cfg.Daemon.StateDir, ok, bad)

	// DigitalOcean.
	if acct, err := do.Account(ctx); err != nil {
		bad("DigitalOcean: %v: check DIGITALOCEAN_ACCESS_TOKEN (a token that may create and delete Droplets)", err)
	} else {
		checkAccount(ctx, do, s, acct, ok, bad)
		checkSSHKeys(ctx, do, cfg.Daemon.SSHKeys, s.SSHSigner, ok, bad)
		checkRegions(ctx, do, s, ok, bad)
	}

	// GitLab.
	v, _, err := gl.Version.GetVersion(gitlab.WithContext(ctx))
	if err != nil {
		bad("GitLab %s: %v: check [gitlab] url and GITLAB_TOKEN", cfg.GitLab.URL, err)
		return out, nil
	}
	ok("GitLab %s: version %s", cfg.GitLab.URL, v.Version)
	for _, p := range cfg.Pools {
		if tok := s.RunnerTokens[p.Name]; strings.Contains(tok, "glrt-") {
			switch id, err := verifyRunnerToken(ctx, gl, tok); {
			case err != nil:
				bad("pool %s: GitLab does not take the token in $%s: %v: copy the runner's token again, or reset it in GitLab", p.Name, p.TokenEnv(), err)
			case id != p.RunnerID:
				bad("pool %s: the token in $%s is runner %d's, not runner_id %d's: the pool's Droplets would take jobs as the other runner, shoal would never see them registered, and would reap them", p.Name, p.TokenEnv(), id, p.RunnerID)
			}
		}
		r, _, err := gl.Runners.GetRunnerDetails(p.RunnerID, gitlab.WithContext(ctx))
		if err != nil {
			bad("pool %s: runner %d: %v: check runner_id, and that GITLAB_TOKEN may read the runner (an administrator's token for an instance runner)", p.Name, p.RunnerID, err)
			continue
		}
		want, have := tags.Sorted(p.Tags), tags.Sorted(r.TagList)
		untagged := p.RunUntagged || len(p.Tags) == 0
		fine := true
		if r.Paused {
			bad("pool %s: runner %d is paused in GitLab: its Droplets would take no job; resume it", p.Name, p.RunnerID)
			fine = false
		}
		if !slices.Equal(want, have) {
			bad("pool %s: runner %d's tags are %v, the pool's %v: make them the same, or the pool boots Droplets for jobs its runner cannot take, or misses jobs it takes", p.Name, p.RunnerID, have, want)
			fine = false
		}
		if r.RunUntagged != untagged {
			bad("pool %s: runner %d takes untagged jobs: %v, the pool counts them: %v: set run_untagged the same in both", p.Name, p.RunnerID, r.RunUntagged, untagged)
			fine = false
		}
		if fine {
			name := ""
			if r.Description != "" {
				name = " (" + r.Description + ")"
			}
			ok("pool %s: runner %d%s, tags %v", p.Name, p.RunnerID, name, have)
		}
	}
	if snap, err := src.Snapshot(ctx); err != nil {
		bad("GitLab: reading the job queue as the daemon does: %v", err)
	} else {
		// A project left out (CI/CD off, no access) does not stop the
		// daemon, but its jobs would get no runner from shoal.
		for _, p := range snap.Problems {
			bad("GitLab: %s", p)
		}
		ok("GitLab: the job queue reads: %d pending jobs, %d runner managers", len(snap.Pending), len(snap.Managers))
	}
	return out, nil
}

// verifyRunnerToken asks GitLab whose a runner authentication token is
// (POST /runners/verify, without a system_id, so no runner manager is
// recorded). client-go's VerifyRegisteredRunner drops the answer's body.
func verifyRunnerToken(ctx context.Context, gl *gitlab.Client, token string) (int, error) {
	req, err := gl.NewRequest(http.MethodPost, "runners/verify", &gitlab.VerifyRegisteredRunnerOptions{Token: &token},
		[]gitlab.RequestOptionFunc{gitlab.WithContext(ctx)})
	if err != nil {
		return 0, err
	}
	var runner struct {
		ID int `json:"id"`
	}
	if _, err := gl.Do(req, &runner); err != nil {
		return 0, err
	}
	return runner.ID, nil
}

// checkStateDir says whether the runner host key is there, without making
// it or the directory.
func checkStateDir(dir string, ok, bad func(string, ...any)) {
	switch _, err := os.Stat(filepath.Join(dir, HostKeyFile)); {
	case err == nil:
		ok("state_dir %s: the runner host key is there", dir)
	case errors.Is(err, fs.ErrNotExist):
		ok("state_dir %s: no runner host key yet: the first start makes one (restore it from a backup if runner Droplets made with it still run)", dir)
	default:
		bad("state_dir %s: %v: shoal's user must be able to read and write it", dir, err)
	}
}

// checkAccount compares the account's Droplet limit with the most Droplets
// the pools may have, on top of the account's other Droplets.
func checkAccount(ctx context.Context, do cloud.Cloud, s Setup, acct cloud.Account, ok, bad func(string, ...any)) {
	most := 0
	for _, p := range s.Config.Pools {
		most += p.MostInstances()
	}
	others := 0
	if all, err := do.ListDroplets(ctx, ""); err == nil {
		for _, d := range all {
			if !slices.Contains(d.Tags, reconcile.FleetTag) {
				others++
			}
		}
	}
	switch {
	case acct.Status != "active":
		bad("DigitalOcean: account %s is %s: new Droplets may be refused", acct.Email, acct.Status)
	case most+others > acct.DropletLimit:
		bad("DigitalOcean: the pools may reach %d Droplets and %d others exist, the account's limit is %d: lower max_instances, or ask DigitalOcean to raise the limit", most, others, acct.DropletLimit)
	default:
		ok("DigitalOcean: account %s, up to %d Droplets (the pools may reach %d, %d others exist)", acct.Email, acct.DropletLimit, most, others)
	}
}

// checkSSHKeys finds each of the keys put on runner Droplets, and shoal's
// own among them: without it, drains over SSH are refused.
func checkSSHKeys(ctx context.Context, do cloud.Cloud, keys []string, signer ssh.Signer, ok, bad func(string, ...any)) {
	mine := ""
	if signer != nil {
		mine = ssh.FingerprintLegacyMD5(signer.PublicKey())
	}
	found, unsure := false, false
	for _, ref := range keys {
		k, err := do.GetSSHKey(ctx, ref)
		if errors.Is(err, cloud.ErrNotFound) {
			bad("DigitalOcean: SSH key %s is not in the account: upload it, or fix [daemon] ssh_keys", ref)
			continue
		}
		if err != nil {
			bad("DigitalOcean: SSH key %s: %v", ref, err)
			unsure = true
			continue
		}
		found = found || k.Fingerprint == mine
		ok("DigitalOcean: SSH key %s (%s)", ref, k.Name)
	}
	if !found && !unsure && mine != "" {
		bad("DigitalOcean: shoal's key (ssh_identity, fingerprint %s) is not among [daemon] ssh_keys, so runners would refuse its drains: upload its public half to DigitalOcean and add that fingerprint to ssh_keys", mine)
	}
}

// checkRegions finds each pool's region, its size there, and its image.
func checkRegions(ctx context.Context, do cloud.Cloud, s Setup, ok, bad func(string, ...any)) {
	regions, err := do.Regions(ctx)
	if err != nil {
		bad("DigitalOcean: regions: %v", err)
		return
	}
	images, err := do.Images(ctx)
	if err != nil {
		bad("DigitalOcean: images: %v", err)
		return
	}
	for _, p := range s.Config.Pools {
		fine := true
		problem := func(format string, a ...any) {
			bad("pool %s: "+format, append([]any{p.Name}, a...)...)
			fine = false
		}
		// An image is named by its slug, or a snapshot by its ID.
		img := slices.IndexFunc(images, func(im cloud.Image) bool { return im.Slug == p.Image || strconv.Itoa(im.ID) == p.Image })
		if img < 0 {
			problem("there is no image %q: see `doctl compute image list-distribution`, or give a snapshot's ID", p.Image)
		}
		switch i := slices.IndexFunc(regions, func(r cloud.Region) bool { return r.Slug == p.Region }); {
		case i < 0:
			problem("there is no region %q: see `doctl compute region list`", p.Region)
		case !regions[i].Available:
			problem("region %s takes no new Droplets: pick another", p.Region)
		default:
			if !slices.Contains(regions[i].Sizes, p.Size) {
				problem("region %s has no size %q: see `doctl compute size list`", p.Region, p.Size)
			}
			if img >= 0 && !slices.Contains(images[img].Regions, p.Region) {
				problem("image %s is not in %s: transfer it there, or pick another region", p.Image, p.Region)
			}
		}
		if fine {
			ok("pool %s: %s Droplets of %s in %s", p.Name, p.Size, p.Image, p.Region)
		}
	}
}
