// Package sshdtest runs a real OpenSSH server (Debian's openssh-server) on a
// loopback port for tests, with its own host key, client key and config in a
// temporary directory. Tests that use it talk to sshd over the real wire.
package sshdtest

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// Server is a running sshd.
type Server struct {
	Host           string // ssh://user@127.0.0.1:port
	User           string
	Port           int
	HostKey        string // server public key, authorized_keys format
	KnownHostsFile string // known_hosts holding HostKey for [127.0.0.1]:port
	IdentityFile   string // client private key accepted by the server
	Dir            string
}

// sshdPath is where Debian's openssh-server installs the daemon.
const sshdPath = "/usr/sbin/sshd"

// Require skips the test when sshd is missing, or fails it in CI (CI=true),
// where .ci/setup.d/deploy.sh must have installed it.
func Require(t testing.TB) {
	t.Helper()
	if _, err := os.Stat(sshdPath); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("sshd not installed (%v): .ci/setup.d/deploy.sh installs openssh-server", err)
		}
		t.Skipf("sshd not installed (%v): apt-get install openssh-server to run this test", err)
	}
}

// Start runs sshd until the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	Require(t)
	dir := t.TempDir()
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	// sshd refuses to start without its privilege-separation directory.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil && os.Geteuid() == 0 {
		t.Fatalf("create /run/sshd: %v", err)
	}

	hostPub := writeKey(t, filepath.Join(dir, "host_key"))
	clientPub := writeKey(t, filepath.Join(dir, "id_ed25519"))
	authorized := filepath.Join(dir, "authorized_keys")
	must(t, os.WriteFile(authorized, ssh.MarshalAuthorizedKey(clientPub), 0o600))

	port := freePort(t)
	cfg := fmt.Sprintf(`Port %d
ListenAddress 127.0.0.1
HostKey %s
AuthorizedKeysFile %s
PidFile %s
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PermitRootLogin prohibit-password
AllowStreamLocalForwarding yes
AllowTcpForwarding local
LogLevel VERBOSE
`, port, filepath.Join(dir, "host_key"), authorized, filepath.Join(dir, "sshd.pid"))
	cfgPath := filepath.Join(dir, "sshd_config")
	must(t, os.WriteFile(cfgPath, []byte(cfg), 0o600))

	logPath := filepath.Join(dir, "sshd.log")
	logf, err := os.Create(logPath)
	must(t, err)
	cmd := exec.Command(sshdPath, "-D", "-e", "-f", cfgPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	must(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		logf.Close()
		if t.Failed() {
			if b, err := os.ReadFile(logPath); err == nil {
				t.Logf("sshd log:\n%s", b)
			}
		}
	})

	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(logPath)
			t.Fatalf("sshd did not start on %s: %v\n%s", addr, err, b)
		}
		time.Sleep(50 * time.Millisecond)
	}

	known := filepath.Join(dir, "known_hosts")
	line := fmt.Sprintf("[127.0.0.1]:%d %s", port, ssh.MarshalAuthorizedKey(hostPub))
	must(t, os.WriteFile(known, []byte(line), 0o600))

	return &Server{
		Host:           fmt.Sprintf("ssh://%s@%s", u.Username, addr),
		User:           u.Username,
		Port:           port,
		HostKey:        string(ssh.MarshalAuthorizedKey(hostPub)),
		KnownHostsFile: known,
		IdentityFile:   filepath.Join(dir, "id_ed25519"),
		Dir:            dir,
	}
}

// NewKey writes a fresh ed25519 private key to path and returns its public key.
func NewKey(t testing.TB, path string) ssh.PublicKey { return writeKey(t, path) }

func writeKey(t testing.TB, path string) ssh.PublicKey {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	must(t, err)
	block, err := ssh.MarshalPrivateKey(priv, "")
	must(t, err)
	must(t, os.WriteFile(path, pem.EncodeToMemory(block), 0o600))
	sp, err := ssh.NewPublicKey(pub)
	must(t, err)
	return sp
}

func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
