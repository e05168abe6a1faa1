package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/shoalci/shoal/internal/clock"
	"github.com/shoalci/shoal/internal/cloud"
	"github.com/shoalci/shoal/internal/doemu"
	"github.com/shoalci/shoal/internal/glemu"
)

// shoal autoscale --once, against both emulators: the secrets come from the
// environment, the SSH identity from its file, and the runner host key is
// made in the state directory; a pending job gets a Droplet.
func TestAutoscaleOnce(t *testing.T) {
	do, err := doemu.New(doemu.Options{Tokens: []string{"dop_v1_autoscale"}})
	if err != nil {
		t.Fatal(err)
	}
	doSrv := httptest.NewServer(do)
	t.Cleanup(doSrv.Close)
	gl, glURL, pid, rn := serveGitLab(t, clock.Real{}, "glpat-autoscale")
	if _, err := gl.CreatePipeline(pid, []glemu.StageSpec{{Jobs: []glemu.JobSpec{{Duration: time.Minute, Tags: []string{"docker"}}}}}); err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "shoal")
	if err != nil {
		t.Fatal(err)
	}
	identity := filepath.Join(dir, "id_ed25519")
	if err := os.WriteFile(identity, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	signer, _ := ssh.NewSignerFromKey(priv)
	doc, err := cloud.New(cloud.Config{Token: "dop_v1_autoscale", APIURL: doSrv.URL})
	if err != nil {
		t.Fatal(err)
	}
	key, err := doc.CreateSSHKey(context.Background(), "shoal", string(ssh.MarshalAuthorizedKey(signer.PublicKey())))
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "shoal.toml")
	stateDir := filepath.Join(dir, "state")
	if err := os.WriteFile(cfgPath, fmt.Appendf(nil, `[gitlab]
url = %q
projects = ["root/api"]

[daemon]
ssh_keys = [%q]
ssh_identity = %q
state_dir = %q

[[pool]]
name = "docker"
tags = ["docker"]
runner_id = %d
`, glURL, key.Fingerprint, identity, stateDir, rn.ID), 0o600); err != nil {
		t.Fatal(err)
	}

	t.Setenv("DIGITALOCEAN_ACCESS_TOKEN", "dop_v1_autoscale")
	t.Setenv("DIGITALOCEAN_API_URL", doSrv.URL)
	t.Setenv("GITLAB_TOKEN", "glpat-autoscale")
	args := []string{"autoscale", "--config", cfgPath, "--once"}

	// Without the pool's runner token, --check says which variable to set,
	// among everything else it looks at, and changes nothing.
	var stdout, stderr bytes.Buffer
	check := []string{"autoscale", "--config", cfgPath, "--check"}
	if code := run(context.Background(), check, &stdout, &stderr); code == exitOK ||
		!strings.Contains(stdout.String(), "FAIL pool docker: $SHOAL_RUNNER_TOKEN_DOCKER") || !strings.Contains(stderr.String(), "1 of 8 checks failed") {
		t.Fatalf("--check without a runner token: exit %d\n%s%s", code, stdout.String(), stderr.String())
	}
	if _, err := os.Stat(stateDir); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("--check made the state directory: %v", err)
	}
	// So does the daemon, which stops there.
	stdout.Reset()
	stderr.Reset()
	if code := run(context.Background(), args, &stdout, &stderr); code == exitOK || !strings.Contains(stderr.String(), "SHOAL_RUNNER_TOKEN_DOCKER") {
		t.Fatalf("without a runner token: exit %d, %s", code, stderr.String())
	}

	t.Setenv("SHOAL_RUNNER_TOKEN_DOCKER", rn.Token)
	// --check finds everything in place and changes nothing.
	stdout.Reset()
	stderr.Reset()
	if code := run(context.Background(), check, &stdout, &stderr); code != exitOK ||
		!strings.Contains(stdout.String(), "All 7 checks passed") {
		t.Fatalf("--check: exit %d\n%s%s", code, stdout.String(), stderr.String())
	}
	if ds, err := doc.ListDroplets(context.Background(), ""); err != nil || len(ds) != 0 {
		t.Fatalf("--check made %d Droplets, %v", len(ds), err)
	}
	stdout.Reset()
	stderr.Reset()
	if code := run(context.Background(), args, &stdout, &stderr); code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if want := "0 Droplets, 1 pending jobs: 1 created"; !strings.Contains(stdout.String(), want) {
		t.Errorf("stdout lacks %q:\n%s", want, stdout.String())
	}
	ds, err := doc.ListDroplets(context.Background(), "shoal-pool-docker")
	if err != nil || len(ds) != 1 {
		t.Fatalf("droplets in the pool: %d, %v; want 1", len(ds), err)
	}
	if st, err := os.Stat(filepath.Join(stateDir, "runner_host_key")); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("runner host key: %v, %v", st, err)
	}

	// The host key file is lost while a runner Droplet exists: no new key
	// unless asked for, since that Droplet trusts the old one.
	if err := os.Remove(filepath.Join(stateDir, "runner_host_key")); err != nil {
		t.Fatal(err)
	}
	stdout.Reset()
	stderr.Reset()
	if code := run(context.Background(), args, &stdout, &stderr); code == exitOK || !strings.Contains(stderr.String(), "1 runner Droplets exist") ||
		!strings.Contains(stderr.String(), "--new-host-key") {
		t.Fatalf("host key lost with a Droplet left: exit %d, %s", code, stderr.String())
	}
	if _, err := os.Stat(filepath.Join(stateDir, "runner_host_key")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a refused start made a host key: %v", err)
	}
	stdout.Reset()
	stderr.Reset()
	if code := run(context.Background(), append(args, "--new-host-key"), &stdout, &stderr); code != exitOK {
		t.Fatalf("--new-host-key: exit %d: %s", code, stderr.String())
	}
	if _, err := os.Stat(filepath.Join(stateDir, "runner_host_key")); err != nil {
		t.Errorf("--new-host-key made no host key: %v", err)
	}
}
