package stack_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/swarm"

	"github.com/shoalci/shoal/internal/deploy/stack"
)

func load(t *testing.T, file string, env ...string) (*stack.Stack, error) {
	t.Helper()
	return stack.Load(context.Background(), stack.Options{
		Files: []string{filepath.Join("testdata", file)},
		Name:  "shop",
		Env:   env,
	})
}

func TestLoadConvertsLikeDockerStack(t *testing.T) {
	envFile := filepath.Join(t.TempDir(), "deploy.env")
	if err := os.WriteFile(envFile, []byte("DB_PASSWORD=hunter2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := stack.Load(context.Background(), stack.Options{
		Files:    []string{"testdata/good.yml"},
		Name:     "shop",
		Env:      []string{"APP_SECRET=s3cret"},
		EnvFiles: []string{envFile},
		ImageTag: "v42",
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := len(st.Services); got != 2 {
		t.Fatalf("services = %d, want 2", got)
	}
	web, ok := st.Service("web")
	if !ok {
		t.Fatal("no web service")
	}
	s := web.Spec
	cs := s.TaskTemplate.ContainerSpec
	checks := []struct {
		what      string
		got, want any
	}{
		{"name", s.Name, "shop_web"},
		{"namespace label", s.Labels[stack.LabelNamespace], "shop"},
		{"container namespace label", cs.Labels[stack.LabelNamespace], "shop"},
		{"image (interpolated IMAGE_TAG)", cs.Image, "registry.example.com/app:v42"},
		{"args", strings.Join(cs.Args, " "), "serve --port 8000"},
		{"env", strings.Join(cs.Env, ","), "DJANGO_SETTINGS_MODULE=app.settings,SECRET_FROM_ENV=s3cret"},
		{"replicas", *s.Mode.Replicated.Replicas, uint64(2)},
		{"update order default", s.UpdateConfig.Order, swarm.UpdateOrderStartFirst},
		{"failure action default", s.UpdateConfig.FailureAction, swarm.UpdateFailureActionRollback},
		{"monitor from file", s.UpdateConfig.Monitor, 5 * time.Second},
		{"healthcheck", strings.Join(cs.Healthcheck.Test, " "), "CMD /app -healthcheck"},
		{"healthcheck interval", cs.Healthcheck.Interval, 2 * time.Second},
		{"published port", s.EndpointSpec.Ports[0].PublishedPort, uint32(8080)},
		{"target port", s.EndpointSpec.Ports[0].TargetPort, uint32(8000)},
		{"networks", len(s.TaskTemplate.Networks), 2},
		{"first network", s.TaskTemplate.Networks[0].Target, "shop_back"},
		{"config target", cs.Configs[0].File.Name, "/etc/nginx.conf"},
		{"secret target", cs.Secrets[0].File.Name, "db_password"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.what, c.got, c.want)
		}
	}
	if !strings.HasPrefix(cs.Configs[0].ConfigName, "shop_nginx-") {
		t.Errorf("config name %q: want shop_nginx-<hash>", cs.Configs[0].ConfigName)
	}
	if string(st.Secrets[0].Data) != "hunter2" {
		t.Errorf("secret data = %q, want DB_PASSWORD from the env file", st.Secrets[0].Data)
	}
	worker, _ := st.Service("worker")
	if m := worker.Spec.TaskTemplate.ContainerSpec.Mounts; len(m) != 1 || m[0].Source != "shop_data" || m[0].Target != "/data" {
		t.Errorf("worker mounts = %+v, want shop_data:/data", m)
	}
	if len(st.Shoal.Release) != 1 || st.Shoal.Release[0].Service != "web" || st.Shoal.Release[0].Timeout != stack.Duration(2*time.Minute) {
		t.Errorf("release = %+v", st.Shoal.Release)
	}
	if h := st.Shoal.Hooks.PreDeploy; len(h) != 1 || h[0].Run != "echo pre" || h[0].String() != "echo pre" {
		t.Errorf("pre-deploy hooks = %+v", h)
	}
}

// A changed config gets a new name, so services roll over to it (Swarm configs are immutable).
func TestConfigNameFollowsContent(t *testing.T) {
	dir := t.TempDir()
	write := func(content string) string {
		f := filepath.Join(dir, "stack.yml")
		y := "services:\n  web:\n    image: app:1\n    configs: [conf]\nconfigs:\n  conf:\n    content: \"" + content + "\"\n"
		if err := os.WriteFile(f, []byte(y), 0o644); err != nil {
			t.Fatal(err)
		}
		return f
	}
	name := func(content string) string {
		st, err := stack.Load(context.Background(), stack.Options{Files: []string{write(content)}, Name: "shop"})
		if err != nil {
			t.Fatal(err)
		}
		return st.Configs[0].Name
	}
	a, b, a2 := name("one"), name("two"), name("one")
	if a == b || a != a2 {
		t.Fatalf("config names: %q, %q, %q: want same content → same name, changed → new", a, b, a2)
	}
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		file  string
		env   []string
		wants []string
	}{
		{"badyaml.yml", nil, []string{"line 6"}},
		{"badschema.yml", nil, []string{"badschema.yml:7: services.db.imag"}},
		{"badtype.yml", nil, []string{"badtype.yml:5: services.web.deploy.replicas"}},
		{"badrelease.yml", nil, []string{`unknown service "api"`, "release[1]: no command"}},
		{"good.yml", []string{}, []string{"set IMAGE_TAG"}},
		{"missing.yml", nil, []string{"no such file"}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			_, err := load(t, tt.file, tt.env...)
			if err == nil {
				t.Fatal("Load succeeded, want an error")
			}
			for _, w := range tt.wants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}
