package sshdocker_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"
	"golang.org/x/crypto/ssh"

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
