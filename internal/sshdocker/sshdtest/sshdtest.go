// Package sshdtest runs a real OpenSSH server (Debian's openssh-server) on a
// loopback port for tests, with its own host keys, client key and config in a
// temporary directory. Tests that use it talk to sshd over the real wire.
package sshdtest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// Server is a running sshd.
type Server struct {
	Host           string // ssh://user@127.0.0.1:port
	User           string
	Port           int
	HostKey        string // the server's ed25519 public key, authorized_keys format
	KnownHostsFile string // known_hosts holding only HostKey, for [127.0.0.1]:port
	IdentityFile   string // client private key accepted by the server
	Dir            string

	// HostKeys are all the server's public keys (RSA, ECDSA and ed25519, like a
	// stock Debian sshd), authorized_keys format. Go's client prefers ECDSA and
	// RSA to ed25519, so a client that trusts only HostKey must ask for it.
	HostKeys []string
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

	// Host keys in the order of Debian's default sshd_config.
	var hostKeyLines string
	var hostKeys []string
	for _, k := range []struct {
		file string
		priv crypto.Signer
	}{
		{"ssh_host_rsa_key", rsaHostKey(t)},
		{"ssh_host_ecdsa_key", newECDSA(t)},
		{"ssh_host_ed25519_key", newEd25519(t)},
	} {
		pub := writePrivate(t, filepath.Join(dir, k.file), k.priv)
		hostKeyLines += "HostKey " + filepath.Join(dir, k.file) + "\n"
		hostKeys = append(hostKeys, string(ssh.MarshalAuthorizedKey(pub)))
	}
	hostPub := hostKeys[len(hostKeys)-1]
	clientPub := writeKey(t, filepath.Join(dir, "id_ed25519"))
	authorized := filepath.Join(dir, "authorized_keys")
	must(t, os.WriteFile(authorized, ssh.MarshalAuthorizedKey(clientPub), 0o600))

	port := freePort(t)
	cfg := fmt.Sprintf(`Port %d
ListenAddress 127.0.0.1
%sAuthorizedKeysFile %s
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
`, port, hostKeyLines, authorized, filepath.Join(dir, "sshd.pid"))
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
	line := fmt.Sprintf("[127.0.0.1]:%d %s", port, hostPub)
	must(t, os.WriteFile(known, []byte(line), 0o600))

	return &Server{
		Host:           fmt.Sprintf("ssh://%s@%s", u.Username, addr),
		User:           u.Username,
		Port:           port,
		HostKey:        hostPub,
		HostKeys:       hostKeys,
		KnownHostsFile: known,
		IdentityFile:   filepath.Join(dir, "id_ed25519"),
		Dir:            dir,
	}
}

// HostKeyOfType is the server's public key of the given type ("ssh-rsa",
// "ecdsa-sha2-nistp256", "ssh-ed25519"), authorized_keys format.
func (s *Server) HostKeyOfType(t testing.TB, typ string) string {
	t.Helper()
	for _, k := range s.HostKeys {
		if strings.HasPrefix(k, typ+" ") {
			return k
		}
	}
	t.Fatalf("sshd has no %s host key", typ)
	return ""
}

// NewKey writes a fresh ed25519 private key to path and returns its public key.
func NewKey(t testing.TB, path string) ssh.PublicKey { return writeKey(t, path) }

// NewKeyOf writes priv (e.g. from NewECDSA) to path and returns its public key.
func NewKeyOf(t testing.TB, path string, priv crypto.Signer) ssh.PublicKey {
	return writePrivate(t, path, priv)
}

// NewECDSA is a fresh ECDSA private key on the given curve.
func NewECDSA(t testing.TB, curve elliptic.Curve) crypto.Signer {
	k, err := ecdsa.GenerateKey(curve, rand.Reader)
	must(t, err)
	return k
}

func writeKey(t testing.TB, path string) ssh.PublicKey {
	t.Helper()
	return writePrivate(t, path, newEd25519(t))
}

func newEd25519(t testing.TB) crypto.Signer {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	must(t, err)
	return priv
}

func newECDSA(t testing.TB) crypto.Signer { return NewECDSA(t, elliptic.P256()) }

// rsaKey is made once per test binary: RSA key generation is slow.
var rsaKey = sync.OnceValues(func() (*rsa.PrivateKey, error) { return rsa.GenerateKey(rand.Reader, 3072) })

func rsaHostKey(t testing.TB) crypto.Signer {
	k, err := rsaKey()
	must(t, err)
	return k
}

func writePrivate(t testing.TB, path string, priv crypto.Signer) ssh.PublicKey {
	t.Helper()
	block, err := ssh.MarshalPrivateKey(priv, "")
	must(t, err)
	must(t, os.WriteFile(path, pem.EncodeToMemory(block), 0o600))
	sp, err := ssh.NewPublicKey(priv.Public())
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
