package main

import (
	"context"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"

	"github.com/shoalci/shoal/internal/clock"
	"github.com/shoalci/shoal/internal/deploy"
	"github.com/shoalci/shoal/internal/deploy/stack"
	"github.com/shoalci/shoal/internal/sshdocker"
)

func init() { subcommands = append(subcommands, newDeployCmd) }

// swarmFlags are how every deploy-family command reaches the Swarm manager.
type swarmFlags struct {
	host       string
	identity   string
	knownHosts string
	hostKey    string
	stack      string
}

func (f *swarmFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.host, "host", os.Getenv("SHOAL_HOST"), "Swarm manager as ssh://user@host[:port] (env SHOAL_HOST)")
	fl.StringVarP(&f.identity, "identity", "i", os.Getenv("SHOAL_SSH_IDENTITY"), "SSH private key file; default: the SSH agent and ~/.ssh/id_* (env SHOAL_SSH_IDENTITY)")
	fl.StringVar(&f.knownHosts, "known-hosts", os.Getenv("SHOAL_SSH_KNOWN_HOSTS"), "known_hosts file checked for the manager's host key (default ~/.ssh/known_hosts; env SHOAL_SSH_KNOWN_HOSTS)")
	fl.StringVar(&f.hostKey, "host-key", os.Getenv("SHOAL_SSH_HOST_KEY"), "pin the manager's host key instead of known_hosts, e.g. \"ssh-ed25519 AAAA...\" (env SHOAL_SSH_HOST_KEY)")
	fl.StringVar(&f.stack, "stack", os.Getenv("SHOAL_STACK"), "stack name (env SHOAL_STACK)")
}

func (f *swarmFlags) check() error {
	var missing []string
	if f.host == "" {
		missing = append(missing, "--host ssh://user@manager")
	}
	if f.stack == "" {
		missing = append(missing, "--stack NAME")
	}
	if len(missing) > 0 {
		return usagef("missing %s", strings.Join(missing, " and "))
	}
	return nil
}

// connect opens the SSH connection and returns a Deployer on it; close it when done.
func (f *swarmFlags) connect(ctx context.Context, out io.Writer) (*deploy.Deployer, func(), error) {
	conn, err := sshdocker.Dial(ctx, sshdocker.Config{Host: f.host, IdentityFile: f.identity, KnownHostsFile: f.knownHosts, HostKey: f.hostKey})
	if err != nil {
		return nil, nil, err
	}
	cli, err := conn.Docker()
	if err != nil {
		conn.Close()
		return nil, nil, err
	}
	d := &deploy.Deployer{
		Docker:    cli,
		Progress:  deploy.NewProgress(out),
		Clock:     clock.Real{},
		Host:      conn.Target().Addr(),
		Performer: performer(),
	}
	return d, func() { cli.Close(); conn.Close() }, nil
}

// run checks the flags, connects, and runs fn with a Deployer whose progress goes to out.
func (f *swarmFlags) run(ctx context.Context, out io.Writer, fn func(*deploy.Deployer) error) error {
	if err := f.check(); err != nil {
		return err
	}
	d, closeConn, err := f.connect(ctx, out)
	if err != nil {
		return err
	}
	defer closeConn()
	return fn(d)
}

// performer names who deploys: the GitLab user in CI, user@machine elsewhere.
func performer() string {
	if u := os.Getenv("GITLAB_USER_LOGIN"); u != "" {
		if p := os.Getenv("CI_PIPELINE_ID"); p != "" {
			return u + " (pipeline " + p + ")"
		}
		return u
	}
	name := "unknown"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	host, _ := os.Hostname()
	return name + "@" + host
}

func newDeployCmd() *cobra.Command {
	var (
		sf       swarmFlags
		files    []string
		envFiles []string
		imageTag string
		version  string
		reason   string
		authFile string
		lockWait time.Duration
		lockTTL  time.Duration
		timeout  time.Duration
		dryRun   bool
		force    bool
	)
	cmd := &cobra.Command{
		Use:   "deploy --host ssh://user@manager -f stack.yml --stack NAME",
		Short: "Deploy a compose stack to Docker Swarm over SSH, with release tasks and rollback",
		Long: `deploy puts a compose stack on a Docker Swarm through a manager's Docker Engine
API, reached over SSH (no docker CLI needed here):

  1. takes the stack's deploy lock (kept in the Swarm; --lock-wait to queue)
  2. runs the pre-deploy hooks (x-shoal.hooks.pre-deploy)
  3. runs the release tasks (x-shoal.release: migrate, collectstatic...) from the new
     images as one-off Swarm jobs, streaming their logs; a failure stops here
  4. updates the services (start-first rolling updates by default) and waits until
     every task runs and passes its health check
  5. on failure, rolls every service back and exits 1 with the failing task's error
     and log tail; then runs the post-deploy hooks

See docs/deploy.md for the x-shoal keys and for deploying from GitLab CI.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := sf.check(); err != nil {
				return err
			}
			if len(files) == 0 {
				return usagef("missing -f stack.yml")
			}
			if imageTag == "" {
				imageTag = firstNonEmpty(os.Getenv("IMAGE_TAG"), os.Getenv("CI_COMMIT_SHORT_SHA"))
			}
			if version == "" {
				version = imageTag
			}
			if reason == "" {
				reason = firstNonEmpty(os.Getenv("CI_PIPELINE_URL"), "deploy by "+performer())
			}
			out := cmd.OutOrStdout()
			quietComposeLogs(cmd.ErrOrStderr())
			st, err := stack.Load(cmd.Context(), stack.Options{Files: files, Name: sf.stack, EnvFiles: envFiles, Env: os.Environ(), ImageTag: imageTag})
			if err != nil {
				return err
			}
			auth, err := registryAuth(authFile, st)
			if err != nil {
				return err
			}
			d, closeConn, err := sf.connect(cmd.Context(), out)
			if err != nil {
				return err
			}
			defer closeConn()
			if auth != nil {
				for _, w := range auth.Warnings {
					d.Progress.Warn("%s", w)
				}
				d.Registry = auth
			}
			_, err = d.Deploy(cmd.Context(), deploy.Options{
				Stack: st, Version: version, Reason: reason, LockWait: lockWait, LockTTL: lockTTL,
				DryRun: dryRun, Force: force, Timeout: timeout, HookDir: filepath.Dir(files[0]),
			})
			return err
		},
	}
	sf.register(cmd)
	fl := cmd.Flags()
	fl.StringArrayVarP(&files, "file", "f", nil, "stack file (compose format); repeat to merge overrides")
	fl.StringArrayVar(&envFiles, "env-file", nil, "KEY=VALUE file for ${VAR} interpolation in the stack file; repeatable")
	fl.StringVar(&imageTag, "image-tag", "", "offered to the stack file as ${IMAGE_TAG} (default $IMAGE_TAG, else $CI_COMMIT_SHORT_SHA)")
	fl.StringVar(&version, "version", "", "version recorded on the services for 'shoal status' (default: the image tag)")
	fl.StringVar(&reason, "reason", "", "why, shown to whoever finds the lock held (default $CI_PIPELINE_URL)")
	fl.StringVar(&authFile, "registry-auth-file", "", "registry credential for the nodes' pulls: {\"username\",\"password\",\"serveraddress\"} or a Docker config.json (default: $CI_DEPLOY_USER/$CI_DEPLOY_PASSWORD or $CI_REGISTRY_USER/$CI_REGISTRY_PASSWORD)")
	fl.DurationVar(&lockWait, "lock-wait", 0, "wait this long for another deploy's lock instead of failing at once")
	fl.DurationVar(&lockTTL, "lock-ttl", deploy.DefaultLockTTL, "after this long a held lock counts as abandoned and is taken over")
	fl.DurationVar(&timeout, "timeout", 0, "how long to wait for the services to converge (default x-shoal.timeout, else 10m)")
	fl.BoolVar(&dryRun, "dry-run", false, "print what would change, service by service, and change nothing")
	fl.BoolVar(&force, "force", false, "roll every service even when its spec is unchanged (e.g. a re-pushed tag)")
	return cmd
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

// registryAuth picks the credential: a file given by flag, else GitLab CI's variables.
func registryAuth(file string, st *stack.Stack) (*deploy.RegistryAuth, error) {
	if file != "" {
		server := ""
		if len(st.Services) > 0 {
			server = registryHost(st.Services[0].Spec.TaskTemplate.ContainerSpec.Image)
		}
		return deploy.RegistryAuthFromFile(file, server)
	}
	return deploy.RegistryAuthFromEnv(os.Getenv), nil
}

// registryHost is the registry part of an image reference ("" for Docker Hub).
func registryHost(image string) string {
	first, _, ok := strings.Cut(image, "/")
	if ok && (strings.ContainsAny(first, ".:") || first == "localhost") {
		return first
	}
	return ""
}

// quietComposeLogs makes compose-go's logrus warnings ("The X variable is not
// set") read like shoal's own.
func quietComposeLogs(w io.Writer) {
	logrus.SetOutput(w)
	logrus.SetFormatter(plainLogFormatter{})
	logrus.SetLevel(logrus.WarnLevel)
}

type plainLogFormatter struct{}

func (plainLogFormatter) Format(e *logrus.Entry) ([]byte, error) {
	return []byte(strings.ToLower(e.Level.String()) + ": " + e.Message + "\n"), nil
}
