package deploy

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/distribution/reference"
	"github.com/moby/moby/api/pkg/authconfig"
	"github.com/moby/moby/api/types/registry"
)

// RegistryAuth is a registry credential for the Swarm nodes' pulls.
type RegistryAuth struct {
	Config registry.AuthConfig
	// Warnings are things a person should fix, e.g. a credential that expires.
	Warnings []string
}

// Encoded is the X-Registry-Auth header value; empty for no credential.
func (a *RegistryAuth) Encoded() (string, error) {
	if a == nil || (a.Config.Username == "" && a.Config.IdentityToken == "") {
		return "", nil
	}
	return authconfig.Encode(a.Config)
}

// For is the X-Registry-Auth value for pulling image: the credential when
// image is on its registry, else empty. Docker's daemon hands the credential
// it is sent to whatever registry the image is on, so a GitLab deploy token
// sent with nginx's image would go to Docker Hub (which refuses the pull).
func (a *RegistryAuth) For(image string) (string, error) {
	if a == nil {
		return "", nil
	}
	ref, err := reference.ParseNormalizedNamed(image)
	if err != nil || reference.Domain(ref) != registryDomain(a.Config.ServerAddress) {
		return "", nil // an image Docker cannot parse fails its pull anyway
	}
	return a.Encoded()
}

// registryDomain is a credential's server address as image references name
// it: no scheme or path, and Docker Hub's aliases (and "") as docker.io.
func registryDomain(server string) string {
	server = strings.TrimPrefix(strings.TrimPrefix(server, "https://"), "http://")
	server, _, _ = strings.Cut(server, "/")
	switch server {
	case "", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com":
		return "docker.io"
	}
	return server
}

// RegistryAuthFromEnv reads GitLab CI's registry variables. A deploy token
// (CI_DEPLOY_USER/CI_DEPLOY_PASSWORD) is preferred over the job's own
// CI_REGISTRY_USER/CI_REGISTRY_PASSWORD, because Swarm keeps the credential
// with the service for every later pull, long after the job token has expired.
// It returns nil when the variables are not set.
func RegistryAuthFromEnv(getenv func(string) string) *RegistryAuth {
	server := getenv("CI_REGISTRY")
	if server == "" {
		return nil
	}
	if u, p := getenv("CI_DEPLOY_USER"), getenv("CI_DEPLOY_PASSWORD"); u != "" && p != "" {
		return &RegistryAuth{Config: registry.AuthConfig{Username: u, Password: p, ServerAddress: server}}
	}
	u, p := getenv("CI_REGISTRY_USER"), getenv("CI_REGISTRY_PASSWORD")
	if u == "" || p == "" {
		return nil
	}
	a := &RegistryAuth{Config: registry.AuthConfig{Username: u, Password: p, ServerAddress: server}}
	if u == "gitlab-ci-token" {
		a.Warnings = append(a.Warnings, fmt.Sprintf(
			"the registry credential for %s is this job's CI_JOB_TOKEN, which expires when the job ends; "+
				"Swarm keeps it for later pulls (a task rescheduled to another node, a scale-up), which will then fail. "+
				"Create a GitLab deploy token with read_registry named gitlab-deploy-token (GitLab exposes it as CI_DEPLOY_USER/CI_DEPLOY_PASSWORD)", server))
	}
	return a
}

// RegistryAuthFromFile reads a credential file: either {"username", "password",
// "serveraddress"} or a Docker config.json, from which the entry for server is
// taken (or the only entry when server is empty).
func RegistryAuthFromFile(path, server string) (*RegistryAuth, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("registry auth file: %w", err)
	}
	var probe struct {
		Auths map[string]struct {
			Auth     string `json:"auth"`
			Username string `json:"username"`
			Password string `json:"password"`
		} `json:"auths"`
		registry.AuthConfig
	}
	if err := json.Unmarshal(b, &probe); err != nil {
		return nil, fmt.Errorf("registry auth file %s: %w", path, err)
	}
	if probe.Auths == nil {
		if probe.Username == "" && probe.IdentityToken == "" {
			return nil, fmt.Errorf("registry auth file %s: no username: want {\"username\", \"password\", \"serveraddress\"} or a Docker config.json", path)
		}
		if probe.ServerAddress == "" {
			probe.ServerAddress = server // the registry of the stack's images
		}
		return &RegistryAuth{Config: probe.AuthConfig}, nil
	}
	var keys []string
	for k := range probe.Auths {
		keys = append(keys, k)
	}
	key := ""
	switch {
	case server != "":
		for _, k := range keys {
			if strings.TrimPrefix(strings.TrimPrefix(k, "https://"), "http://") == server {
				key = k
			}
		}
	case len(keys) == 1:
		key = keys[0]
	}
	if key == "" {
		return nil, fmt.Errorf("registry auth file %s has no single entry for %q (entries: %s)", path, server, strings.Join(keys, ", "))
	}
	e := probe.Auths[key]
	cfg := registry.AuthConfig{Username: e.Username, Password: e.Password, ServerAddress: key}
	if e.Auth != "" {
		raw, err := base64.StdEncoding.DecodeString(e.Auth)
		if err != nil {
			return nil, fmt.Errorf("registry auth file %s: entry %s: %w", path, key, err)
		}
		cfg.Username, cfg.Password, _ = strings.Cut(string(raw), ":")
	}
	if cfg.Username == "" {
		return nil, fmt.Errorf("registry auth file %s: entry %s has no credentials (credential helpers are not supported: write the credential into the file)", path, key)
	}
	return &RegistryAuth{Config: cfg}, nil
}
