package runnerhost_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shoalci/shoal/internal/runnerhost"
)

// Stand-ins for what the setup script calls on a Droplet. curl serves the
// Droplet's name from the metadata service and, for a download, an
// installer that logs that it ran; it fails for URLs containing $FAIL.
// systemctl is-active says what $BOX/state holds.
const (
	fakeCurl = `#!/bin/sh
echo "curl $*" >> "$BOX/log"
out=; url=
while [ $# -gt 0 ]; do
  case $1 in
  -o) out=$2; shift ;;
  -*) ;;
  *) url=$1 ;;
  esac
  shift
done
if [ -n "${FAIL:-}" ]; then
  case $url in *"$FAIL"*) echo "curl: (22) The requested URL returned error: 503" >&2; exit 22 ;; esac
fi
case $url in
*/metadata/v1/hostname) printf %s shoal-docker-00000001 ;;
*) printf 'echo "ran %s" >> "$BOX/log"\n' "$url" > "$out" ;;
esac
`
	fakeSetupSystemctl = `#!/bin/sh
echo "systemctl $*" >> "$BOX/log"
if [ "$1" = is-active ]; then
  cat "$BOX/state"
  [ "$(cat "$BOX/state")" = active ]
fi
`
	fakeAptGet = `#!/bin/sh
echo "apt-get $*" >> "$BOX/log"
`
	installed = `#!/bin/sh
exit 0
`
)

// checkSetupScript runs the cloud-init's setup script under /bin/sh with
// stand-ins for the network, systemd, apt, Docker and gitlab-runner: a
// failed download stops it, and the runner is started once, with the
// system_id in place, and restarted only if it ran before the system_id
// was written.
func checkSetupScript(t *testing.T, script string) {
	t.Helper()
	var tools []string
	for _, tool := range []string{"sh", "bash", "cat", "chmod", "cut", "mktemp", "rm", "sha256sum"} {
		p, err := exec.LookPath(tool)
		if err != nil {
			t.Logf("no %s: the setup script is not run", tool)
			return
		}
		tools = append(tools, p)
	}
	type result struct {
		log      string
		err      error
		systemID string
	}
	run := func(state, fail string, preinstalled bool) result {
		box := t.TempDir()
		bin := filepath.Join(box, "bin")
		for _, dir := range []string{bin, filepath.Join(box, "tmp"), filepath.Join(box, "etc/gitlab-runner")} {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		for _, p := range tools {
			if err := os.Symlink(p, filepath.Join(bin, filepath.Base(p))); err != nil {
				t.Fatal(err)
			}
		}
		stubs := map[string]string{"curl": fakeCurl, "systemctl": fakeSetupSystemctl, "apt-get": fakeAptGet}
		if preinstalled {
			stubs["docker"], stubs["gitlab-runner"] = installed, installed
		}
		for name, content := range stubs {
			if err := os.WriteFile(filepath.Join(bin, name), []byte(content), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(box, "state"), []byte(state+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("/bin/sh", "-c", strings.ReplaceAll(script, "/etc/gitlab-runner/", box+"/etc/gitlab-runner/"))
		cmd.Env = []string{"PATH=" + bin, "BOX=" + box, "TMPDIR=" + filepath.Join(box, "tmp"), "FAIL=" + fail}
		out, err := cmd.CombinedOutput()
		log, _ := os.ReadFile(filepath.Join(box, "log"))
		id, _ := os.ReadFile(filepath.Join(box, "etc/gitlab-runner/.runner_system_id"))
		return result{string(log) + string(out), err, strings.TrimSpace(string(id))}
	}

	// A fresh image: both installers are downloaded, then run; the runner
	// package's postinst starts the runner, and the script makes sure it runs.
	r := run("inactive", "", false)
	if r.err != nil {
		t.Fatalf("setup script on a fresh image: %v\n%s", r.err, r.log)
	}
	if want := runnerhost.SystemID("shoal-docker-00000001"); r.systemID != want {
		t.Errorf("the setup script wrote system_id %q, want %q", r.systemID, want)
	}
	order := []string{"curl -fsS --retry 5 http://169.254.169.254/metadata/v1/hostname",
		"ran https://get.docker.com", "ran https://packages.gitlab.com/", "apt-get install -y gitlab-runner",
		"systemctl daemon-reload", "systemctl enable --now gitlab-runner.service"}
	at := 0
	for _, step := range order {
		i := strings.Index(r.log[at:], step)
		if i < 0 {
			t.Errorf("setup script on a fresh image: no %q after what went before:\n%s", step, r.log)
			break
		}
		at += i + len(step)
	}
	for _, line := range strings.Split(r.log, "\n") {
		if strings.HasPrefix(line, "curl ") && !strings.Contains(line, "--retry") {
			t.Errorf("setup script ran %q: a download without retries", line)
		}
	}
	if strings.Contains(r.log, "restart") {
		t.Errorf("setup script on a fresh image restarts the runner (a drained runner would take jobs again):\n%s", r.log)
	}

	// A failed download stops the script before anything else is installed.
	r = run("inactive", "get.docker.com", false)
	if r.err == nil || strings.Contains(r.log, "ran ") || strings.Contains(r.log, "apt-get") || strings.Contains(r.log, "enable") {
		t.Errorf("setup script with get.docker.com failing: %v; want it to fail before installing or starting anything:\n%s", r.err, r.log)
	}

	// An image with everything installed: a runner running before the
	// system_id was written is restarted to read it, one that was not is
	// started.
	for state, restart := range map[string]bool{"active": true, "activating": true, "inactive": false, "failed": false} {
		r := run(state, "", true)
		if r.err != nil || strings.Contains(r.log, "ran ") || !strings.Contains(r.log, "systemctl enable --now gitlab-runner.service") ||
			strings.Contains(r.log, "systemctl restart gitlab-runner.service") != restart {
			t.Errorf("setup script on a prepared image whose runner was %s: %v; want it enabled and started, restarted: %v\n%s", state, r.err, restart, r.log)
		}
	}
}
