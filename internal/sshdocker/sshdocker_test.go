package sshdocker_test

import (
	"context"
	"crypto/elliptic"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moby/moby/client"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/shoalci/shoal/internal/sshdocker"
	"github.com/shoalci/shoal/internal/sshdocker/sshdtest"
)

func TestParseHost(t *testing.T) {
	tests := []struct {
		in      string
		want    sshdocker.Target
		wantErr string
	}{
		{in: "ssh://deploy@manager.example:2222", want: sshdocker.Target{User: "deploy", Host: "manager.example", Port: "2222"}},
		{in: "deploy@10.0.0.1", want: sshdocker.Target{User: "deploy", Host: "10.0.0.1", Port: "22"}},
		{in: "ssh://root@[::1]:22", want: sshdocker.Target{User: "root", Host: "::1", Port: "22"}},
		{in: "", wantErr: "no host given"},
		{in: "tcp://manager:2375", wantErr: "scheme must be ssh://"},
		{in: "ssh://deploy@manager/path", wantErr: "unexpected path"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := sshdocker.ParseHost(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseHost(%q) error = %v, want %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("ParseHost(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
}

func requireDocker(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(sshdocker.DefaultSocket); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("Docker Engine socket missing: %v", err)
		}
		t.Skipf("Docker Engine socket missing: %v", err)
	}
}

// The Docker Engine API works end to end through a real sshd.
func TestDockerOverSSH(t *testing.T) {
	requireDocker(t)
	srv := sshdtest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	for name, cfg := range map[string]sshdocker.Config{
		"known_hosts": {Host: srv.Host, IdentityFile: srv.IdentityFile, KnownHostsFile: srv.KnownHostsFile},
		"pinned":      {Host: srv.Host, IdentityFile: srv.IdentityFile, HostKey: srv.HostKey},
	} {
		t.Run(name, func(t *testing.T) {
			conn, err := sshdocker.Dial(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			cli, err := conn.Docker()
			if err != nil {
				t.Fatal(err)
			}
			defer cli.Close()
			info, err := cli.Info(ctx, client.InfoOptions{})
			if err != nil {
				t.Fatalf("docker info over SSH: %v", err)
			}
			if info.Info.ID == "" {
				t.Fatalf("docker info over SSH returned no engine ID: %+v", info.Info)
			}
		})
	}
}

func TestDialRefusals(t *testing.T) {
	srv := sshdtest.Start(t)
	dir := t.TempDir()

	otherKey := sshdtest.NewKey(t, filepath.Join(dir, "other_host_key"))
	wrongKnown := filepath.Join(dir, "known_hosts_wrong")
	line := "[127.0.0.1]:" + strconv.Itoa(srv.Port) + " " + string(ssh.MarshalAuthorizedKey(otherKey))
	if err := os.WriteFile(wrongKnown, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	emptyKnown := filepath.Join(dir, "known_hosts_empty")
	if err := os.WriteFile(emptyKnown, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	// sshd has RSA, ECDSA P-256 and ed25519 host keys, but no P-384 one.
	p384Key := sshdtest.NewKeyOf(t, filepath.Join(dir, "p384_host_key"), sshdtest.NewECDSA(t, elliptic.P384()))
	strangerKey := filepath.Join(dir, "stranger")
	sshdtest.NewKey(t, strangerKey)

	// A port nothing listens on.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := l.Addr().String()
	l.Close()

	tests := []struct {
		name    string
		cfg     sshdocker.Config
		wantErr string
	}{
		{"wrong host key in known_hosts", sshdocker.Config{Host: srv.Host, IdentityFile: srv.IdentityFile, KnownHostsFile: wrongKnown}, "HOST KEY MISMATCH"},
		{"wrong pinned host key", sshdocker.Config{Host: srv.Host, IdentityFile: srv.IdentityFile, HostKey: string(ssh.MarshalAuthorizedKey(otherKey))}, "HOST KEY MISMATCH"},
		// Asking for the trusted type first must not turn a real mismatch into
		// "no common algorithm": the server still shows a key, and it is refused.
		{"pinned key of a type the server lacks", sshdocker.Config{Host: srv.Host, IdentityFile: srv.IdentityFile, HostKey: string(ssh.MarshalAuthorizedKey(p384Key))}, "HOST KEY MISMATCH"},
		{"host not in known_hosts", sshdocker.Config{Host: srv.Host, IdentityFile: srv.IdentityFile, KnownHostsFile: emptyKnown}, "host key unknown"},
		{"client key not authorized", sshdocker.Config{Host: srv.Host, IdentityFile: strangerKey, KnownHostsFile: srv.KnownHostsFile}, "was refused"},
		{"unreachable host", sshdocker.Config{Host: "ssh://root@" + closedAddr, IdentityFile: srv.IdentityFile, KnownHostsFile: srv.KnownHostsFile, Timeout: 3 * time.Second}, "connect to"},
		{"missing known_hosts", sshdocker.Config{Host: srv.Host, IdentityFile: srv.IdentityFile, KnownHostsFile: filepath.Join(dir, "nope")}, "read known hosts"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := sshdocker.Dial(context.Background(), tt.cfg)
			if err == nil {
				conn.Close()
				t.Fatalf("Dial succeeded, want error containing %q", tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Dial error = %q, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

// A stock sshd has several host keys and Go's client prefers ECDSA and RSA to
// ed25519: trusting only one of them (the documented SHOAL_SSH_HOST_KEY
// "ssh-ed25519 ...", or a known_hosts holding one key per host) must still
// connect, by asking the server for the trusted type.
func TestDialAsksForTheTrustedHostKey(t *testing.T) {
	srv := sshdtest.Start(t)
	dir := t.TempDir()
	hostPort := "[127.0.0.1]:" + strconv.Itoa(srv.Port)
	knownHosts := func(name string, lines ...string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(strings.Join(lines, "")), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	ed25519Key := srv.HostKeyOfType(t, ssh.KeyAlgoED25519)
	rsaKey := srv.HostKeyOfType(t, ssh.KeyAlgoRSA)
	ecdsaKey := srv.HostKeyOfType(t, ssh.KeyAlgoECDSA256)
	// The same IP on another port has its own ECDSA key: a lookup that
	// ignored the port would ask this server for ECDSA and refuse it.
	otherPortKey := sshdtest.NewKeyOf(t, filepath.Join(dir, "other_port_key"), sshdtest.NewECDSA(t, elliptic.P256()))

	tests := []struct {
		name string
		cfg  sshdocker.Config
	}{
		// As a CI variable holds it: one line, with the comment ssh-keyscan or a .pub file has.
		{"pinned ed25519", sshdocker.Config{HostKey: strings.TrimSpace(ed25519Key) + " root@manager"}},
		// OpenSSH refuses SHA-1 ssh-rsa: the key must be asked for as rsa-sha2-*.
		{"pinned rsa", sshdocker.Config{HostKey: rsaKey}},
		{"pinned ecdsa", sshdocker.Config{HostKey: ecdsaKey}},
		{"known_hosts with ed25519 only", sshdocker.Config{KnownHostsFile: srv.KnownHostsFile}},
		{"known_hosts with rsa only", sshdocker.Config{KnownHostsFile: knownHosts("rsa", hostPort+" "+rsaKey)}},
		{"hashed known_hosts with ed25519 only", sshdocker.Config{KnownHostsFile: knownHosts("hashed", knownhosts.HashHostname(hostPort)+" "+ed25519Key)}},
		{"known_hosts with ed25519 for this port, ecdsa for another", sshdocker.Config{KnownHostsFile: knownHosts("ports",
			"[127.0.0.1]:1 "+string(ssh.MarshalAuthorizedKey(otherPortKey)),
			hostPort+" "+ed25519Key)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			cfg.Host, cfg.IdentityFile = srv.Host, srv.IdentityFile
			conn, err := sshdocker.Dial(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			conn.Close()
		})
	}
}

// A network that silently drops every packet must fail a request in flight,
// and later ones, with an error that says so, within a few keepalive
// intervals: without keepalives a read waits for as long as TCP retransmits.
func TestKeepAliveCutsOffADeadNetwork(t *testing.T) {
	srv := sshdtest.Start(t)
	echo := startEcho(t, filepath.Join(t.TempDir(), "echo.sock"))
	proxy := startDropProxy(t, net.JoinHostPort("127.0.0.1", strconv.Itoa(srv.Port)))

	const interval = 100 * time.Millisecond
	conn, err := sshdocker.Dial(context.Background(), sshdocker.Config{
		Host:         fmt.Sprintf("ssh://%s@%s", srv.User, proxy.addr),
		IdentityFile: srv.IdentityFile,
		HostKey:      srv.HostKey,
		Socket:       echo,
		KeepAlive:    interval,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	stream, err := conn.DialSocket(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()

	roundTrip := func(msg string) <-chan error {
		done := make(chan error, 1)
		go func() {
			if _, err := stream.Write([]byte(msg)); err != nil {
				done <- err
				return
			}
			buf := make([]byte, len(msg))
			if _, err := io.ReadFull(stream, buf); err != nil {
				done <- err
				return
			}
			if string(buf) != msg {
				done <- fmt.Errorf("echo returned %q, want %q", buf, msg)
				return
			}
			done <- nil
		}()
		return done
	}
	wait := func(done <-chan error) error {
		select {
		case err := <-done:
			return err
		case <-time.After(10 * time.Second):
			t.Fatal("request still blocked 10s after the network went dead: no keepalive cut it off")
			return nil
		}
	}

	// Idle for several intervals on a healthy network: sshd's answers (a
	// failure, for a request it does not know) keep the connection up.
	time.Sleep(10 * interval)
	if err := wait(roundTrip("alive")); err != nil {
		t.Fatalf("echo over a healthy network after idling: %v", err)
	}

	proxy.drop.Store(true)
	start := time.Now()
	err = wait(roundTrip("dead"))
	if !errors.Is(err, sshdocker.ErrConnectionLost) || !strings.Contains(err.Error(), "no answer to a keepalive") {
		t.Fatalf("request in flight on a dead network: error = %v, want ErrConnectionLost saying no keepalive was answered", err)
	}
	t.Logf("cut off after %s: %v", time.Since(start).Round(time.Millisecond), err)

	if _, err := conn.DialSocket(context.Background()); !errors.Is(err, sshdocker.ErrConnectionLost) {
		t.Fatalf("new request on the lost connection: error = %v, want ErrConnectionLost", err)
	}
}

// startEcho serves a Unix socket that echoes what it reads, as the remote
// end of a direct-streamlocal channel.
func startEcho(t *testing.T, path string) string {
	t.Helper()
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return path
}

// dropProxy forwards TCP to a backend until drop is set; from then on it
// swallows every byte in both directions without closing anything, as a
// dead route or a stateful firewall that forgot the flow does.
type dropProxy struct {
	addr string
	drop atomic.Bool
}

func startDropProxy(t *testing.T, backend string) *dropProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &dropProxy{addr: l.Addr().String()}
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	pipe := func(dst, src net.Conn) {
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if err != nil {
				dst.Close()
				return
			}
			if p.drop.Load() {
				continue
			}
			if _, err := dst.Write(buf[:n]); err != nil {
				src.Close()
				return
			}
		}
	}
	go func() {
		for {
			client, err := l.Accept()
			if err != nil {
				return
			}
			server, err := net.Dial("tcp", backend)
			if err != nil {
				client.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, client, server)
			mu.Unlock()
			go pipe(server, client)
			go pipe(client, server)
		}
	}()
	return p
}
