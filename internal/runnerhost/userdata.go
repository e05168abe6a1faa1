package runnerhost

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/pelletier/go-toml/v2"
	"go.yaml.in/yaml/v4"
	"golang.org/x/crypto/ssh"
)

// HostKey is the SSH host key every runner Droplet of the fleet gets through
// its cloud-init, so shoal knows it before the Droplet exists and never has to
// trust a key on first use. One key serves the fleet because one create
// request gives up to ten Droplets the same user data.
type HostKey struct {
	priv   ed25519.PrivateKey
	signer ssh.Signer
}

// NewHostKey makes a new ed25519 host key.
func NewHostKey() (*HostKey, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate host key: %w", err)
	}
	return hostKeyOf(priv)
}

func hostKeyOf(priv ed25519.PrivateKey) (*HostKey, error) {
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, fmt.Errorf("host key: %w", err)
	}
	return &HostKey{priv: priv, signer: s}, nil
}

// LoadHostKey reads the host key at path (OpenSSH format), creating it (mode
// 0600) if the file does not exist, and reports whether it did: the first run
// of the daemon makes it, and every later run finds the same key for the
// Droplets the first one made.
func LoadHostKey(path string) (key *HostKey, created bool, err error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		k, err := NewHostKey()
		if err != nil {
			return nil, false, err
		}
		if err := k.save(path); err != nil {
			return nil, false, fmt.Errorf("save runner host key %s: %w", path, err)
		}
		return k, true, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read runner host key: %w", err)
	}
	raw, err := ssh.ParseRawPrivateKey(data)
	if err != nil {
		return nil, false, fmt.Errorf("runner host key %s: %w", path, err)
	}
	priv, ok := raw.(*ed25519.PrivateKey)
	if !ok {
		return nil, false, fmt.Errorf("runner host key %s is a %T, not ed25519: move it away and shoal makes a new one", path, raw)
	}
	k, err := hostKeyOf(*priv)
	return k, false, err
}

// save writes the key to a new file that only its owner can read.
func (k *HostKey) save(path string) error {
	pemText, err := k.privatePEM()
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(pemText); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// PublicKey is the host key runner Droplets present.
func (k *HostKey) PublicKey() ssh.PublicKey { return k.signer.PublicKey() }

// Signer serves the key (tests run an SSH server with it).
func (k *HostKey) Signer() ssh.Signer { return k.signer }

func (k *HostKey) privatePEM() (string, error) {
	block, err := ssh.MarshalPrivateKey(k.priv, "shoal runner host key")
	if err != nil {
		return "", fmt.Errorf("encode host key: %w", err)
	}
	return string(pem.EncodeToMemory(block)), nil
}

// RunnerSpec is what the runners of one pool are told.
type RunnerSpec struct {
	// GitLabURL is the GitLab the runner takes jobs from.
	GitLabURL string
	// Token is the runner's authentication token (glrt-…): every Droplet of
	// the pool runs as a manager of that one runner.
	Token string
	// Concurrent is how many jobs the Droplet runs at once (capacity_per_instance).
	Concurrent int
	// Name names the runner in config.toml (the pool's name).
	Name string
	// DefaultImage is the Docker executor's image for jobs that name none
	// (default alpine:latest).
	DefaultImage string
}

// runnerConfig is gitlab-runner's config.toml, as far as shoal sets it.
type runnerConfig struct {
	Concurrent    int             `toml:"concurrent"`
	CheckInterval int             `toml:"check_interval"`
	Runners       []runnerSection `toml:"runners"`
}

type runnerSection struct {
	Name     string       `toml:"name"`
	URL      string       `toml:"url"`
	Token    string       `toml:"token"`
	Executor string       `toml:"executor"`
	Docker   dockerConfig `toml:"docker"`
}

type dockerConfig struct {
	Image   string   `toml:"image"`
	Volumes []string `toml:"volumes"`
}

// Files on the Droplet.
const (
	configPath   = "/etc/gitlab-runner/config.toml"
	systemIDPath = "/etc/gitlab-runner/.runner_system_id"
	dropInPath   = "/etc/systemd/system/gitlab-runner.service.d/shoal.conf"
	aptConfPath  = "/etc/apt/apt.conf.d/90shoal-dpkg-lock"
	// A graceful shutdown (DigitalOcean's shutdown action: the ACPI power
	// button) waits for the runner's jobs.
	poweroffDropInPath = "/etc/systemd/system/poweroff.target.d/shoal.conf"
	haltDropInPath     = "/etc/systemd/system/halt.target.d/shoal.conf"
)

// aptConf has apt wait for the dpkg lock instead of failing at once: right
// after a fresh Ubuntu image's first boot apt-daily and unattended-upgrades
// often hold it, and the setup script's installs (get.docker.com's and the
// runner's) would fail.
const aptConf = `DPkg::Lock::Timeout "600";
`

// shutdownWait lifts the 30-minute limit systemd's poweroff.target and
// halt.target put on a shutdown (JobTimeoutSec=30min, then
// JobTimeoutAction=poweroff-force): shoal shuts an unreachable runner's
// Droplet down gracefully, and a job with more than half an hour to go
// would otherwise be cut off. shoal's own hard limit bounds the wait.
const shutdownWait = `[Unit]
JobTimeoutSec=infinity
`

// metadataBlock keeps job containers (Docker's FORWARD path) away from the
// metadata service, whose user data holds the runner token.
const metadataBlock = "DOCKER-USER -d 169.254.169.254 -j REJECT"

// dropIn makes the packaged gitlab-runner unit stop the graceful way:
// SIGQUIT, to the main process only (KillMode=mixed: a helper process must
// not get it first), has gitlab-runner take no new job and exit once its
// jobs end (GitLab Runner's documented signals), with no timeout, since a CI
// job may run an hour; and a runner that exits after a drain stays down. Every start
// first puts the metadata block in place (Docker makes the DOCKER-USER chain,
// hence After=docker.service), so a rebooted Droplet keeps it, and a runner
// whose block fails does not start.
const dropIn = `[Unit]
After=docker.service
Wants=docker.service

[Service]
ExecStartPre=/bin/sh -c 'iptables -C ` + metadataBlock + ` 2>/dev/null || iptables -I ` + metadataBlock + `'
KillSignal=SIGQUIT
KillMode=mixed
TimeoutStopSec=infinity
Restart=on-failure
`

// setupScript runs once at first boot, as root, after write_files. The
// system_id comes from the Droplet's own name (the metadata service), as
// SystemID computes it; Docker and gitlab-runner are installed only when the
// image lacks them (a prepared snapshot boots faster). Installers are
// downloaded to a file first and then run: piped into a shell, a failed
// download would run nothing and succeed.
//
// The runner must run with config.toml and the system_id, so it must not
// have started before them. config.toml and the unit's drop-in (which blocks
// the metadata service before every start) are written before this script,
// the system_id by its first lines, before the runner package is installed:
// its postinst starts the runner, with both. Then the runner is enabled and
// started if it is not running (an image with the runner installed but
// disabled). Only a runner already there when the system_id was written (an
// image whose runner starts at boot, which it should not) is restarted. A
// start is skipped, without error, once shoal has drained the runner (see
// drainedDropIn).
const setupScript = `set -eu
name=$(curl -fsS --retry 5 http://169.254.169.254/metadata/v1/hostname)
printf 's_%s\n' "$(printf %s "$name" | sha256sum | cut -c1-12)" > ` + systemIDPath + `
chmod 600 ` + systemIDPath + `
state=$(systemctl is-active ` + ServiceName + ` || true)
tmp=$(mktemp -d)
if ! command -v docker >/dev/null; then
  curl -fsSL --retry 5 -o "$tmp/get-docker.sh" https://get.docker.com
  sh "$tmp/get-docker.sh"
fi
systemctl daemon-reload
if ! command -v gitlab-runner >/dev/null; then
  curl -fsSL --retry 5 -o "$tmp/script.deb.sh" https://packages.gitlab.com/install/repositories/runner/gitlab-runner/script.deb.sh
  bash "$tmp/script.deb.sh"
  DEBIAN_FRONTEND=noninteractive apt-get install -y gitlab-runner
fi
rm -rf "$tmp"
systemctl daemon-reload
systemctl enable --now ` + ServiceName + `
case $state in
''|inactive|failed|unknown) ;;
*) systemctl restart ` + ServiceName + ` ;;
esac
`

// UserData returns the cloud-init (#cloud-config) for a pool's Droplets.
func UserData(key *HostKey, spec RunnerSpec) (string, error) {
	if spec.GitLabURL == "" || spec.Token == "" {
		return "", errors.New("runner user data: the GitLab URL and the runner token are required")
	}
	if spec.Concurrent < 1 {
		spec.Concurrent = 1
	}
	if spec.DefaultImage == "" {
		spec.DefaultImage = "alpine:latest"
	}
	rc, err := toml.Marshal(runnerConfig{Concurrent: spec.Concurrent, CheckInterval: 3, Runners: []runnerSection{{
		Name: spec.Name, URL: spec.GitLabURL, Token: spec.Token, Executor: "docker",
		Docker: dockerConfig{Image: spec.DefaultImage, Volumes: []string{"/cache"}}}}})
	if err != nil {
		return "", fmt.Errorf("runner config.toml: %w", err)
	}
	priv, err := key.privatePEM()
	if err != nil {
		return "", err
	}
	type file struct {
		Path        string `yaml:"path"`
		Permissions string `yaml:"permissions"`
		Content     string `yaml:"content"`
	}
	doc := struct {
		SSHDeleteKeys bool              `yaml:"ssh_deletekeys"`
		SSHKeys       map[string]string `yaml:"ssh_keys"`
		WriteFiles    []file            `yaml:"write_files"`
		RunCmd        [][]string        `yaml:"runcmd"`
	}{
		SSHDeleteKeys: true,
		SSHKeys: map[string]string{
			"ed25519_private": priv,
			"ed25519_public":  strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key.PublicKey()))),
		},
		WriteFiles: []file{
			{Path: configPath, Permissions: "0600", Content: string(rc)},
			{Path: dropInPath, Permissions: "0644", Content: dropIn},
			{Path: aptConfPath, Permissions: "0644", Content: aptConf},
			{Path: poweroffDropInPath, Permissions: "0644", Content: shutdownWait},
			{Path: haltDropInPath, Permissions: "0644", Content: shutdownWait},
		},
		RunCmd: [][]string{{"sh", "-c", setupScript}},
	}
	out, err := yaml.Marshal(doc)
	if err != nil {
		return "", fmt.Errorf("runner cloud-config: %w", err)
	}
	return "#cloud-config\n" + string(out), nil
}
