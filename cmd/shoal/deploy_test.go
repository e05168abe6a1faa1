package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moby/moby/client"
	"golang.org/x/crypto/ssh"

	"github.com/shoalci/shoal/internal/deploy/deploytest"
	"github.com/shoalci/shoal/internal/sshdocker/sshdtest"
)

// The deploy commands end to end: flags, SSH, hooks, output and exit codes.
func TestDeployCommands(t *testing.T) {
	local := deploytest.LocalDocker(t)
	deploytest.EnsureSwarm(t, local)
	reg := deploytest.StartRegistry(t)
	deploytest.BuildAndPush(t, local, reg+"/app:c1", map[string]string{"APP_VERSION": "c1"})
	srv := sshdtest.Start(t)
	const stackName = "shoalcli"
	deploytest.RemoveStack(t, local, stackName)
	t.Cleanup(func() { deploytest.RemoveStack(t, local, stackName) })
	for _, k := range []string{"CI_REGISTRY", "SHOAL_HOST", "SHOAL_STACK", "IMAGE_TAG", "CI_COMMIT_SHORT_SHA"} {
		t.Setenv(k, "")
	}

	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, ".env"), "API_KEY=s3cret\n")
	stackFile := filepath.Join(dir, "stack.yml")
	writeFile(t, stackFile, `services:
  web:
    image: `+reg+`/app:${IMAGE_TAG}
    healthcheck:
      test: ["CMD", "/app", "-healthcheck"]
      interval: 1s
      retries: 2
    secrets: [api_key]
  seed:
    image: `+reg+`/app:${IMAGE_TAG}
    command: ["-release", "seed"]
    deploy:
      mode: replicated-job
secrets:
  api_key:
    environment: API_KEY
x-shoal:
  hooks:
    pre-deploy: ['echo "$$SHOAL_STACK $$SHOAL_VERSION" > pre.txt']
    post-deploy: ['echo "$$SHOAL_RESULT" > post.txt']
`)
	conn := []string{"--host", srv.Host, "-i", srv.IdentityFile, "--known-hosts", srv.KnownHostsFile, "--stack", stackName}
	shoal := func(args ...string) (int, string, string) {
		var out, errOut bytes.Buffer
		code := run(context.Background(), args, &out, &errOut)
		t.Logf("shoal %s → %d\n%s%s", strings.Join(args, " "), code, out.String(), errOut.String())
		return code, out.String(), errOut.String()
	}

	code, out, _ := shoal(append([]string{"deploy", "-f", stackFile, "--image-tag", "c1"}, conn...)...)
	if code != 0 || !strings.Contains(out, "==> Deployed shoalcli version c1") {
		t.Fatalf("deploy: exit %d, want 0 and a Deployed line", code)
	}
	if !strings.Contains(out, "shoalcli_seed                1/1 running, job completed") {
		t.Errorf("deploy did not wait for the stack's job service to complete")
	}
	web, err := local.ServiceInspect(context.Background(), "shoalcli_web", client.ServiceInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if refs := web.Service.Spec.TaskTemplate.ContainerSpec.Secrets; len(refs) != 1 || refs[0].SecretID == "" || !strings.HasPrefix(refs[0].SecretName, "shoalcli_api_key-") {
		t.Errorf("web's secret references = %+v, want shoalcli_api_key-<hash> with its ID", refs)
	}
	if got := readFile(t, filepath.Join(dir, "pre.txt")); got != "shoalcli c1" {
		t.Errorf("pre-deploy hook saw %q, want SHOAL_STACK and SHOAL_VERSION", got)
	}
	if got := readFile(t, filepath.Join(dir, "post.txt")); got != "deployed" {
		t.Errorf("post-deploy hook saw SHOAL_RESULT=%q", got)
	}

	code, out, _ = shoal(append([]string{"status"}, conn...)...)
	if code != 0 || !strings.Contains(out, "shoalcli_web") || !strings.Contains(out, "1/1") || !strings.Contains(out, " c1 ") {
		t.Errorf("status: exit %d, output does not show web 1/1 at c1", code)
	}
	code, out, _ = shoal(append([]string{"logs", "web"}, conn...)...)
	if code != 0 || !strings.Contains(out, "serving version c1") {
		t.Errorf("logs: exit %d, output does not show the service's log", code)
	}
	code, out, _ = shoal(append([]string{"lock", "status"}, conn...)...)
	if code != 0 || !strings.Contains(out, "not locked") {
		t.Errorf("lock status: exit %d", code)
	}
	// The first deploy created every service: there is nothing to go back to.
	code, _, errOut := shoal(append([]string{"rollback"}, conn...)...)
	if code != 1 || !strings.Contains(errOut, "no earlier version") || !strings.Contains(errOut, "next: deploy the version you want") {
		t.Errorf("rollback after the first deploy: exit %d, stderr %q; want 1, a refusal and what to do", code, errOut)
	}

	// Refusals: nothing changes on the cluster, the exit code says whose fault.
	otherKey := sshdtest.NewKey(t, filepath.Join(dir, "other"))
	wrongKey := []string{"--host", srv.Host, "-i", srv.IdentityFile, "--host-key", strings.TrimSpace(string(ssh.MarshalAuthorizedKey(otherKey))), "--stack", stackName}
	badStack := filepath.Join(dir, "bad.yml")
	writeFile(t, badStack, "services:\n  web:\n    image: app:1\n    replica: 2\n")
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantErr  string
	}{
		{"wrong host key", append([]string{"deploy", "-f", stackFile, "--image-tag", "c2"}, wrongKey...), 1, "HOST KEY MISMATCH"},
		{"bad stack file", append([]string{"deploy", "-f", badStack}, conn...), 1, "bad.yml:4: services.web.replica: unknown key"},
		{"no stack name", []string{"deploy", "-f", stackFile, "--host", srv.Host}, 2, "missing --stack NAME"},
		{"logs without service", append([]string{"logs"}, conn...), 2, "accepts 1 arg"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, errOut := shoal(tt.args...)
			if code != tt.wantCode || !strings.Contains(errOut, tt.wantErr) {
				t.Errorf("exit %d, stderr %q; want %d and %q", code, errOut, tt.wantCode, tt.wantErr)
			}
		})
	}
	code, out, _ = shoal(append([]string{"status"}, conn...)...)
	if code != 0 || !strings.Contains(out, " c1 ") {
		t.Errorf("after the refused deploys the stack should still be at c1:\n%s", out)
	}
}

func writeFile(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}
