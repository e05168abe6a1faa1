// Package sshdocker connects to a Docker Engine on a remote host through SSH:
// the remote engine's Unix socket is reached over a direct-streamlocal channel
// of one SSH connection, so the machine running shoal needs no docker CLI and
// the engine needs no TCP port.
package sshdocker

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/moby/moby/client"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
	"golang.org/x/crypto/ssh/knownhosts"
)

// DefaultSocket is where the Docker Engine listens on the remote host.
const DefaultSocket = "/var/run/docker.sock"

// Config says where to connect and how to trust and authenticate.
type Config struct {
	// Host is ssh://user@host[:port]; user defaults to the local user, port to 22.
	Host string
	// IdentityFile is a private key file; when empty, keys come from the SSH agent
	// (SSH_AUTH_SOCK) and the usual ~/.ssh/id_* files.
	IdentityFile string
	// KnownHostsFile defaults to ~/.ssh/known_hosts. Ignored when HostKey is set.
	KnownHostsFile string
	// HostKey pins the server's public key, in authorized_keys format
	// ("ssh-ed25519 AAAA..."), instead of a known_hosts file.
	HostKey string
	// Socket is the remote Docker socket; DefaultSocket when empty.
	Socket string
	// Timeout bounds the TCP connect and SSH handshake; 15s when zero.
	Timeout time.Duration
	// KeepAlive is how often the server is asked to answer (keepalive@openssh.com);
	// when an answer takes longer than three intervals the connection is closed,
	// so a silently dropped network fails requests in flight instead of blocking
	// them for as long as TCP retransmits. 15s when zero, off when negative.
	KeepAlive time.Duration
}

// ErrConnectionLost is wrapped by errors of requests cut off by a keepalive
// that was not answered in time.
var ErrConnectionLost = errors.New("SSH connection lost")

// Target is a parsed ssh:// address.
type Target struct {
	User string
	Host string // host without port
	Port string
}

// Addr is host:port.
func (t Target) Addr() string { return net.JoinHostPort(t.Host, t.Port) }

// ParseHost parses ssh://user@host[:port] (the ssh:// prefix may be omitted).
func ParseHost(raw string) (Target, error) {
	if raw == "" {
		return Target{}, errors.New("no host given: pass --host ssh://user@manager")
	}
	if !strings.Contains(raw, "://") {
		raw = "ssh://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		return Target{}, fmt.Errorf("host %q: %w", raw, err)
	}
	if u.Scheme != "ssh" {
		return Target{}, fmt.Errorf("host %q: scheme must be ssh://", raw)
	}
	if u.Path != "" && u.Path != "/" {
		return Target{}, fmt.Errorf("host %q: unexpected path %q", raw, u.Path)
	}
	t := Target{Host: u.Hostname(), Port: u.Port()}
	if t.Host == "" {
		return Target{}, fmt.Errorf("host %q: no host name", raw)
	}
	if t.Port == "" {
		t.Port = "22"
	}
	if u.User != nil {
		t.User = u.User.Username()
	}
	if t.User == "" {
		if cur, err := user.Current(); err == nil {
			t.User = cur.Username
		} else {
			t.User = "root"
		}
	}
	return t, nil
}

// Conn is one SSH connection to a Swarm manager.
type Conn struct {
	ssh    *ssh.Client
	target Target
	socket string
	lost   atomic.Pointer[error] // set before a keepalive timeout closes ssh
}

// Dial opens the SSH connection, checking the host key.
func Dial(ctx context.Context, cfg Config) (*Conn, error) {
	t, err := ParseHost(cfg.Host)
	if err != nil {
		return nil, err
	}
	hostKeyCB, keyTypes, err := hostKeyCallback(cfg, t.Addr())
	if err != nil {
		return nil, err
	}
	auths, err := authMethods(cfg.IdentityFile)
	if err != nil {
		return nil, err
	}
	timeout := cfg.Timeout
	if timeout == 0 {
		timeout = 15 * time.Second
	}
	sshCfg := &ssh.ClientConfig{
		User:              t.User,
		Auth:              auths,
		HostKeyCallback:   hostKeyCB,
		HostKeyAlgorithms: hostKeyAlgorithms(keyTypes),
		Timeout:           timeout,
	}
	d := net.Dialer{Timeout: timeout}
	tcp, err := d.DialContext(ctx, "tcp", t.Addr())
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w (is the host up and is sshd listening on port %s?)", t.Addr(), err, t.Port)
	}
	// The handshake has no context of its own: bound it by the deadline.
	_ = tcp.SetDeadline(time.Now().Add(timeout))
	c, chans, reqs, err := ssh.NewClientConn(tcp, t.Addr(), sshCfg)
	if err != nil {
		tcp.Close()
		return nil, explainHandshake(t, cfg, err)
	}
	_ = tcp.SetDeadline(time.Time{})
	socket := cfg.Socket
	if socket == "" {
		socket = DefaultSocket
	}
	conn := &Conn{ssh: ssh.NewClient(c, chans, reqs), target: t, socket: socket}
	interval := cfg.KeepAlive
	if interval == 0 {
		interval = 15 * time.Second
	}
	if interval > 0 {
		go conn.keepAlive(interval, 3*interval)
	}
	return conn, nil
}

// keepAlive asks the server for an answer every interval and closes the
// connection when one takes longer than bound. Closing it is what makes reads
// blocked on a dead network return.
func (c *Conn) keepAlive(interval, bound time.Duration) {
	closed := make(chan struct{})
	go func() {
		_ = c.ssh.Wait()
		close(closed)
	}()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-closed:
			return
		case <-tick.C:
		}
		answered := make(chan error, 1)
		go func() {
			// OpenSSH answers requests it does not know with a failure: an answer all the same.
			_, _, err := c.ssh.SendRequest("keepalive@openssh.com", true, nil)
			answered <- err
		}()
		timer := time.NewTimer(bound)
		select {
		case <-closed:
			timer.Stop()
			return
		case err := <-answered:
			timer.Stop()
			if err != nil {
				return // the connection is already gone
			}
		case <-timer.C:
			err := fmt.Errorf("%w to %s: no answer to a keepalive within %s (network down, or the host unreachable or stalled); check that the host is reachable and run the command again", ErrConnectionLost, c.target.Addr(), bound)
			c.lost.Store(&err)
			_ = c.ssh.Close()
			return
		}
	}
}

// explain turns an error of a connection a keepalive closed into the reason.
func (c *Conn) explain(err error) error {
	if lost := c.lostErr(); err != nil && lost != nil {
		return lost
	}
	return err
}

// lostErr is the reason a keepalive closed the connection, or nil.
func (c *Conn) lostErr() error {
	if p := c.lost.Load(); p != nil {
		return *p
	}
	return nil
}

// explainHandshake turns handshake failures into messages that say what to do.
func explainHandshake(t Target, cfg Config, err error) error {
	var keyErr *knownhosts.KeyError
	switch {
	case errors.As(err, &keyErr) && len(keyErr.Want) == 0:
		return fmt.Errorf("ssh %s: host key unknown: %w; add it to %s (ssh-keyscan -p %s %s) or pin it with --host-key", t.Addr(), err, knownHostsPath(cfg), t.Port, t.Host)
	case errors.As(err, &keyErr):
		return fmt.Errorf("ssh %s: HOST KEY MISMATCH, refusing to connect (the server is not the one in %s: possible man-in-the-middle, or the host was rebuilt): %w", t.Addr(), knownHostsPath(cfg), err)
	case errors.Is(err, errPinnedMismatch):
		return fmt.Errorf("ssh %s: HOST KEY MISMATCH, refusing to connect: %w", t.Addr(), err)
	case strings.Contains(err.Error(), "unable to authenticate"):
		return fmt.Errorf("ssh %s: user %q was refused: %w; check --identity, the SSH agent, and the user's authorized_keys on the host", t.Addr(), t.User, err)
	}
	return fmt.Errorf("ssh %s: %w", t.Addr(), err)
}

var errPinnedMismatch = errors.New("server's host key does not match the pinned key")

// hostKeyCallback checks the server's key against the pinned key or known_hosts,
// and returns the key types it trusts for addr (host:port): none when the host
// is unknown.
func hostKeyCallback(cfg Config, addr string) (ssh.HostKeyCallback, []string, error) {
	if cfg.HostKey != "" {
		want, _, _, _, err := ssh.ParseAuthorizedKey([]byte(cfg.HostKey))
		if err != nil {
			return nil, nil, fmt.Errorf("pinned host key: %w (expected authorized_keys format, e.g. \"ssh-ed25519 AAAA...\")", err)
		}
		cb := func(_ string, _ net.Addr, got ssh.PublicKey) error {
			if string(got.Marshal()) != string(want.Marshal()) {
				return fmt.Errorf("%w: got %s %s, pinned %s %s", errPinnedMismatch, got.Type(), ssh.FingerprintSHA256(got), want.Type(), ssh.FingerprintSHA256(want))
			}
			return nil
		}
		return cb, []string{want.Type()}, nil
	}
	path := knownHostsPath(cfg)
	cb, err := knownhosts.New(path)
	if err != nil {
		return nil, nil, fmt.Errorf("read known hosts %s: %w; create it (ssh-keyscan HOST >> %s) or pin the key with --host-key", path, err, path)
	}
	return cb, knownKeyTypes(cb, addr), nil
}

// probeKey is a key no known_hosts holds (from an all-zero seed), offered to
// knownhosts to learn what it wants.
var probeKey = func() ssh.PublicKey {
	k, err := ssh.NewPublicKey(ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize)).Public())
	if err != nil {
		panic(err) // an ed25519 public key always converts
	}
	return k
}()

// knownKeyTypes lists the types of the keys known_hosts holds for addr.
// knownhosts has no lookup, but offered a key it cannot know, it answers with
// the keys it wanted, matched the way the handshake will match them (port
// form [host]:port, hashed names, patterns).
func knownKeyTypes(cb ssh.HostKeyCallback, addr string) []string {
	// knownhosts prefers the dialled address to the remote one; the latter
	// only has to parse.
	var keyErr *knownhosts.KeyError
	if !errors.As(cb(addr, &net.TCPAddr{IP: net.IPv4zero}, probeKey), &keyErr) {
		return nil
	}
	var types []string
	for _, k := range keyErr.Want {
		if !slices.Contains(types, k.Key.Type()) {
			types = append(types, k.Key.Type())
		}
	}
	return types
}

// hostKeyAlgorithms puts the algorithms of the trusted key types first, so a
// server with several host keys shows a trusted one: Go's client otherwise
// prefers ECDSA and RSA to ed25519, and a host pinned by its ed25519 key
// would look like a man-in-the-middle. The other algorithms follow, as in
// OpenSSH, so a server without a trusted type still shows a key and a real
// mismatch is reported as one. Nil (Go's defaults) for an unknown host.
func hostKeyAlgorithms(types []string) []string {
	if len(types) == 0 {
		return nil
	}
	var algos []string
	add := func(as ...string) {
		for _, a := range as {
			if !slices.Contains(algos, a) {
				algos = append(algos, a)
			}
		}
	}
	for _, typ := range types {
		switch typ {
		case ssh.KeyAlgoRSA:
			// One RSA key, three signature algorithms; OpenSSH refuses SHA-1 ssh-rsa by default.
			add(ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA)
		case ssh.CertAlgoRSAv01:
			add(ssh.CertAlgoRSASHA512v01, ssh.CertAlgoRSASHA256v01, ssh.CertAlgoRSAv01)
		default:
			add(typ)
		}
	}
	add(ssh.SupportedAlgorithms().HostKeys...)
	return algos
}

func knownHostsPath(cfg Config) string {
	if cfg.KnownHostsFile != "" {
		return cfg.KnownHostsFile
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".ssh", "known_hosts")
}

// authMethods prefers an explicit key file; otherwise the agent and default keys.
func authMethods(identity string) ([]ssh.AuthMethod, error) {
	if identity != "" {
		s, err := loadKey(identity)
		if err != nil {
			return nil, err
		}
		return []ssh.AuthMethod{ssh.PublicKeys(s)}, nil
	}
	var signers []ssh.Signer
	if sock := os.Getenv("SSH_AUTH_SOCK"); sock != "" {
		if c, err := net.Dial("unix", sock); err == nil {
			if ss, err := agent.NewClient(c).Signers(); err == nil {
				signers = append(signers, ss...)
			}
		}
	}
	home, _ := os.UserHomeDir()
	for _, name := range []string{"id_ed25519", "id_ecdsa", "id_rsa"} {
		if s, err := loadKey(filepath.Join(home, ".ssh", name)); err == nil {
			signers = append(signers, s)
		}
	}
	if len(signers) == 0 {
		return nil, errors.New("no SSH key: pass --identity FILE, or start an SSH agent with a key loaded")
	}
	return []ssh.AuthMethod{ssh.PublicKeys(signers...)}, nil
}

func loadKey(path string) (ssh.Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read SSH key: %w", err)
	}
	s, err := ssh.ParsePrivateKey(b)
	if err != nil {
		var missing *ssh.PassphraseMissingError
		if errors.As(err, &missing) {
			return nil, fmt.Errorf("SSH key %s is protected by a passphrase: load it into ssh-agent and omit --identity", path)
		}
		return nil, fmt.Errorf("parse SSH key %s: %w", path, err)
	}
	return s, nil
}

// DialSocket opens a stream to the remote Docker socket through the SSH connection.
func (c *Conn) DialSocket(ctx context.Context) (net.Conn, error) {
	type result struct {
		conn net.Conn
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		conn, err := c.ssh.Dial("unix", c.socket)
		if conn != nil {
			conn = socketConn{conn, c}
		}
		ch <- result{conn, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil && c.lostErr() != nil {
			return nil, c.lostErr()
		}
		if r.err != nil {
			return nil, fmt.Errorf("open %s on %s over SSH: %w (the SSH user needs access to the Docker socket, and the host's sshd_config must allow local forwarding: AllowStreamLocalForwarding and AllowTcpForwarding yes or local, no DisableForwarding)", c.socket, c.target.Host, r.err)
		}
		return r.conn, nil
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.conn != nil {
				r.conn.Close()
			}
		}()
		return nil, ctx.Err()
	}
}

// socketConn reports a connection closed by a keepalive timeout as lost, not
// as a bare EOF.
type socketConn struct {
	net.Conn
	c *Conn
}

func (s socketConn) Read(p []byte) (int, error) {
	n, err := s.Conn.Read(p)
	return n, s.c.explain(err)
}

func (s socketConn) Write(p []byte) (int, error) {
	n, err := s.Conn.Write(p)
	return n, s.c.explain(err)
}

// CloseWrite keeps half-close working for hijacked streams (exec, attach).
func (s socketConn) CloseWrite() error {
	cw, ok := s.Conn.(interface{ CloseWrite() error })
	if !ok {
		return errors.New("half-close not supported on this connection")
	}
	return cw.CloseWrite()
}

// Docker returns an Engine API client whose every request goes through this connection.
// Close the Conn (not only the client) when done.
func (c *Conn) Docker() (*client.Client, error) {
	cli, err := client.New(
		// The host is only a label for the HTTP layer; the dialer ignores it.
		client.WithHost("unix://"+c.socket),
		client.WithDialContext(func(ctx context.Context, _, _ string) (net.Conn, error) {
			return c.DialSocket(ctx)
		}),
	)
	if err != nil {
		return nil, fmt.Errorf("docker client over SSH: %w", err)
	}
	return cli, nil
}

// Target is the address this connection was made to.
func (c *Conn) Target() Target { return c.target }

// Close ends the SSH connection.
func (c *Conn) Close() error { return c.ssh.Close() }
