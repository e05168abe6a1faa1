package deploy_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moby/moby/api/pkg/authconfig"
	"github.com/moby/moby/api/types/registry"

	"github.com/shoalci/shoal/internal/deploy"
)

func TestRegistryAuthFromEnv(t *testing.T) {
	tests := []struct {
		name     string
		env      map[string]string
		wantUser string
		wantWarn bool
	}{
		{"no registry", map[string]string{}, "", false},
		{"job token warns", map[string]string{"CI_REGISTRY": "registry.gitlab.com", "CI_REGISTRY_USER": "gitlab-ci-token", "CI_REGISTRY_PASSWORD": "glcbt-x"}, "gitlab-ci-token", true},
		{"deploy token preferred", map[string]string{"CI_REGISTRY": "registry.gitlab.com", "CI_REGISTRY_USER": "gitlab-ci-token", "CI_REGISTRY_PASSWORD": "glcbt-x", "CI_DEPLOY_USER": "gitlab+deploy-token-1", "CI_DEPLOY_PASSWORD": "gldt-y"}, "gitlab+deploy-token-1", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := deploy.RegistryAuthFromEnv(func(k string) string { return tt.env[k] })
			if tt.wantUser == "" {
				if a != nil {
					t.Fatalf("got %+v, want no credential", a)
				}
				return
			}
			if a == nil || a.Config.Username != tt.wantUser || a.Config.ServerAddress != "registry.gitlab.com" {
				t.Fatalf("got %+v, want user %s", a, tt.wantUser)
			}
			if got := len(a.Warnings) > 0; got != tt.wantWarn {
				t.Errorf("warnings = %v, want warning: %v", a.Warnings, tt.wantWarn)
			}
			enc, err := a.Encoded()
			if err != nil {
				t.Fatal(err)
			}
			dec, err := authconfig.Decode(enc)
			if err != nil || dec.Username != tt.wantUser {
				t.Errorf("encoded credential decodes to %+v, %v", dec, err)
			}
		})
	}
}

func TestRegistryAuthFromFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	plain := write("plain.json", `{"username":"u","password":"p","serveraddress":"reg.example"}`)
	docker := write("config.json", `{"auths":{"reg.example":{"auth":"dTI6cDI="},"other.example":{"auth":"eDp5"}}}`)
	helper := write("helper.json", `{"auths":{"reg.example":{}}}`)

	tests := []struct {
		path, server, wantUser, wantErr string
	}{
		{plain, "", "u", ""},
		{docker, "reg.example", "u2", ""},
		{docker, "", "", "no single entry"},
		{helper, "reg.example", "", "credential helpers are not supported"},
		{filepath.Join(dir, "missing"), "", "", "no such file"},
	}
	for _, tt := range tests {
		a, err := deploy.RegistryAuthFromFile(tt.path, tt.server)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%s: error %v, want %q", filepath.Base(tt.path), err, tt.wantErr)
			}
			continue
		}
		if err != nil || a.Config.Username != tt.wantUser {
			t.Errorf("%s: got %+v, %v; want user %s", filepath.Base(tt.path), a, err, tt.wantUser)
		}
	}
}

// The credential goes only with images of its own registry: Docker's daemon
// would hand it to any other (Docker Hub for nginx).
func TestRegistryAuthGoesOnlyToItsRegistry(t *testing.T) {
	auth := func(server string) *deploy.RegistryAuth {
		return &deploy.RegistryAuth{Config: registry.AuthConfig{Username: "gitlab+deploy-token-1", Password: "gldt-y", ServerAddress: server}}
	}
	tests := []struct {
		server, image string
		sent          bool
	}{
		{"registry.gitlab.com", "registry.gitlab.com/acme/shop/web:1.2", true},
		{"https://registry.gitlab.com/", "registry.gitlab.com/acme/shop/web@sha256:" + strings.Repeat("a", 64), true},
		{"registry.gitlab.com", "nginx:1.27", false},
		{"registry.gitlab.com", "docker.io/library/traefik:v3", false},
		{"registry.gitlab.com", "registry.gitlab.com.evil.example/x:1", false},
		{"gitlab.example.com:5050", "gitlab.example.com:5050/acme/web:1", true},
		{"gitlab.example.com:5050", "gitlab.example.com/acme/web:1", false},
		{"https://index.docker.io/v1/", "acme/private:1", true},
		{"", "acme/private:1", true},
		{"", "registry.gitlab.com/acme/web:1", false},
		{"registry.gitlab.com", "Not A Reference", false},
	}
	for _, tt := range tests {
		got, err := auth(tt.server).For(tt.image)
		if err != nil || (got != "") != tt.sent {
			t.Errorf("credential for %q with image %q: %q, %v; want sent %v", tt.server, tt.image, got, err, tt.sent)
		}
	}
	if got, err := (*deploy.RegistryAuth)(nil).For("nginx"); got != "" || err != nil {
		t.Errorf("no credential: %q, %v", got, err)
	}
	// A credential file that names no registry is for the stack's.
	plain := filepath.Join(t.TempDir(), "plain.json")
	if err := os.WriteFile(plain, []byte(`{"username":"u","password":"p"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := deploy.RegistryAuthFromFile(plain, "registry.gitlab.com")
	if err != nil {
		t.Fatal(err)
	}
	if own, _ := a.For("registry.gitlab.com/acme/web:1"); own == "" {
		t.Error("a credential file without serveraddress was not sent with the stack's own registry's image")
	}
	if hub, _ := a.For("nginx"); hub != "" {
		t.Error("a credential file without serveraddress was sent with nginx's image")
	}
}
