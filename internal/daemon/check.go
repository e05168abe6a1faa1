package daemon

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	gitlab "gitlab.com/gitlab-org/api/client-go"
	"golang.org/x/crypto/ssh"

	"github.com/shoalci/shoal/internal/clock"
	"github.com/shoalci/shoal/internal/cloud"
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
// SSH keys and shoal's own among them, each pool's region and size, each
// pool's GitLab runner (tags, paused, token) and GitLab's queue as the daemon
// reads it.
func Check(ctx context.Context, s Setup) ([]Finding, error) {
	cfg := s.Config
	if err := cfg.DaemonReady(s.File); err != nil {
		return nil, err
	}
	if s.Clock == nil {
		s.Clock = clock.Real{}
	}
	do, gl, src, err := s.clients()
	if err != nil {
		return nil, err
	}
	var out []Finding
	ok := func(format string, a ...any) { out = append(out, Finding{true, fmt.Sprintf(format, a...)}) }
	bad := func(format string, a ...any) { out = append(out, Finding{false, fmt.Sprintf(format, a...)}) }

	// DigitalOcean.
	if acct, err := do.Account(ctx); err != nil {
		bad("DigitalOcean: %v: check DIGITALOCEAN_ACCESS_TOKEN (a token with write scope)", err)
	} else {
		most := 0
		for _, p := range cfg.Pools {
			most += p.MaxInstances
		}
		switch {
		case acct.Status != "active":
			bad("DigitalOcean: account %s is %s: new Droplets may be refused", acct.Email, acct.Status)
		case most > acct.DropletLimit:
			bad("DigitalOcean: the pools may reach %d Droplets, the account's limit is %d: lower max_instances, or ask DigitalOcean to raise the limit", most, acct.DropletLimit)
		default:
			ok("DigitalOcean: account %s, up to %d Droplets (the pools may reach %d)", acct.Email, acct.DropletLimit, most)
		}
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
		switch tok := s.RunnerTokens[p.Name]; {
		case tok == "":
			bad("pool %s: $%s is not set: export the runner's authentication token (glrt-…)", p.Name, p.TokenEnv())
		case !strings.HasPrefix(tok, "glrt-"):
			bad("pool %s: $%s is not a runner authentication token (glrt-…): create the runner in GitLab and copy the token it shows once", p.Name, p.TokenEnv())
		}
		r, _, err := gl.Runners.GetRunnerDetails(p.RunnerID, gitlab.WithContext(ctx))
		if err != nil {
			bad("pool %s: runner %d: %v: check runner_id, and that GITLAB_TOKEN may read the runner (an administrator's token for an instance runner)", p.Name, p.RunnerID, err)
			continue
		}
		want, have := tags.Sorted(p.Tags), tags.Sorted(r.TagList)
		untagged := p.RunUntagged || len(p.Tags) == 0
		switch {
		case r.Paused:
			bad("pool %s: runner %d is paused in GitLab: its Droplets would take no job; resume it", p.Name, p.RunnerID)
		case !slices.Equal(want, have):
			bad("pool %s: runner %d's tags are %v, the pool's %v: make them the same, or the pool boots Droplets for jobs its runner cannot take, or misses jobs it takes", p.Name, p.RunnerID, have, want)
		case r.RunUntagged != untagged:
			bad("pool %s: runner %d takes untagged jobs: %v, the pool counts them: %v: set run_untagged the same in both", p.Name, p.RunnerID, r.RunUntagged, untagged)
		default:
			ok("pool %s: runner %d %q, tags %v", p.Name, p.RunnerID, r.Description, have)
		}
	}
	if snap, err := src.Snapshot(ctx); err != nil {
		bad("GitLab: reading the job queue as the daemon does: %v", err)
	} else {
		ok("GitLab: the job queue reads: %d pending jobs, %d runner managers", len(snap.Pending), len(snap.Managers))
	}
	return out, nil
}

// checkSSHKeys finds each of the keys put on runner Droplets, and shoal's
// own among them: without it, drains over SSH are refused.
func checkSSHKeys(ctx context.Context, do cloud.Cloud, keys []string, signer ssh.Signer, ok, bad func(string, ...any)) {
	mine := ""
	if signer != nil {
		mine = ssh.FingerprintLegacyMD5(signer.PublicKey())
	}
	found := false
	for _, ref := range keys {
		k, err := do.GetSSHKey(ctx, ref)
		if errors.Is(err, cloud.ErrNotFound) {
			bad("DigitalOcean: SSH key %s is not in the account: upload it, or fix [daemon] ssh_keys", ref)
			continue
		}
		if err != nil {
			bad("DigitalOcean: SSH key %s: %v", ref, err)
			continue
		}
		found = found || k.Fingerprint == mine
		ok("DigitalOcean: SSH key %s (%s)", ref, k.Name)
	}
	if !found && mine != "" {
		bad("DigitalOcean: shoal's key (ssh_identity, %s) is not among [daemon] ssh_keys: shoal could not drain runners; add its public half", mine)
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
		i := slices.IndexFunc(regions, func(r cloud.Region) bool { return r.Slug == p.Region })
		// An image is named by its slug, or a snapshot by its ID.
		img := slices.IndexFunc(images, func(im cloud.Image) bool { return im.Slug == p.Image || strconv.Itoa(im.ID) == p.Image })
		switch {
		case i < 0:
			bad("pool %s: there is no region %q: see `doctl compute region list`", p.Name, p.Region)
		case !regions[i].Available:
			bad("pool %s: region %s takes no new Droplets: pick another", p.Name, p.Region)
		case !slices.Contains(regions[i].Sizes, p.Size):
			bad("pool %s: region %s has no size %q: see `doctl compute size list`", p.Name, p.Region, p.Size)
		case img < 0:
			bad("pool %s: there is no image %q: see `doctl compute image list-distribution`, or give a snapshot's ID", p.Name, p.Image)
		case !slices.Contains(images[img].Regions, p.Region):
			bad("pool %s: image %s is not in %s: transfer it there, or pick another region", p.Name, p.Image, p.Region)
		default:
			ok("pool %s: %s Droplets of %s in %s", p.Name, p.Size, p.Image, p.Region)
		}
	}
}
