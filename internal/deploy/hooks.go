package deploy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"

	"github.com/shoalci/shoal/internal/deploy/stack"
)

// hookEnv is what hooks learn about the deploy, Kamal-style.
func (d *Deployer) hookEnv(st *stack.Stack, o Options) []string {
	var services []string
	for _, s := range st.Services {
		services = append(services, s.Name)
	}
	return []string{
		"SHOAL_STACK=" + st.Name,
		"SHOAL_VERSION=" + o.Version,
		"SHOAL_HOST=" + d.Host,
		"SHOAL_PERFORMER=" + d.Performer,
		"SHOAL_SERVICES=" + strings.Join(services, ","),
	}
}

// runHooks runs each command with sh -c on the machine running shoal; the first
// failure stops the rest. It shows a hook as written in the stack file (h.Text)
// and runs it interpolated (h.Run): a token interpolated into the command must
// not reach the CI log or the error.
func runHooks(ctx context.Context, p Progress, kind string, hooks []stack.Hook, dir string, env []string) error {
	for _, h := range hooks {
		c := h.String()
		p.Step("Running %s hook: %s", kind, c)
		cmd := exec.CommandContext(ctx, "sh", "-c", h.Run)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), env...)
		pr, pw := io.Pipe()
		cmd.Stdout, cmd.Stderr = pw, pw
		done := make(chan struct{})
		go func() {
			defer close(done)
			sc := bufio.NewScanner(pr)
			for sc.Scan() {
				p.Log(kind, sc.Text())
			}
		}()
		err := cmd.Run()
		pw.Close()
		<-done
		if err != nil {
			return fmt.Errorf("%s hook %q: %w; its output is above", kind, c, err)
		}
	}
	return nil
}
