// Package runnerhosttest is a runner Droplet's sshd for tests: it presents a
// host key, lets in one client key, and answers every command it is asked to
// run with what the test says.
package runnerhosttest

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"net"
	"testing"

	"golang.org/x/crypto/ssh"
)

// Serve starts an sshd on a loopback port, stopped when the test ends, and
// returns its address. exec gets each command and returns its standard
// output; the exit status is 0.
func Serve(t testing.TB, hostKey ssh.Signer, client ssh.PublicKey, exec func(cmd string) string) string {
	t.Helper()
	return ServeStatus(t, hostKey, client, func(cmd string) (string, uint32) { return exec(cmd), 0 })
}

// ServeStatus is Serve with exec also returning the command's exit status.
func ServeStatus(t testing.TB, hostKey ssh.Signer, client ssh.PublicKey, exec func(cmd string) (stdout string, status uint32)) string {
	t.Helper()
	cfg := &ssh.ServerConfig{PublicKeyCallback: func(_ ssh.ConnMetadata, k ssh.PublicKey) (*ssh.Permissions, error) {
		if string(k.Marshal()) != string(client.Marshal()) {
			return nil, errors.New("key not authorized")
		}
		return nil, nil
	}}
	cfg.AddHostKey(hostKey)
	l, err := net.Listen("tcp", "127.0.0.1:0")
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
			go serve(c, cfg, exec)
		}
	}()
	return l.Addr().String()
}

func serve(c net.Conn, cfg *ssh.ServerConfig, exec func(string) (string, uint32)) {
	defer c.Close()
	_, chans, reqs, err := ssh.NewServerConn(c, cfg)
	if err != nil {
		return
	}
	go ssh.DiscardRequests(reqs)
	for nc := range chans {
		ch, chReqs, err := nc.Accept()
		if err != nil {
			return
		}
		for req := range chReqs {
			if req.Type != "exec" {
				_ = req.Reply(false, nil)
				continue
			}
			var msg struct{ Command string }
			_ = ssh.Unmarshal(req.Payload, &msg)
			_ = req.Reply(true, nil)
			out, status := exec(msg.Command)
			_, _ = ch.Write([]byte(out))
			_, _ = ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{status}))
			ch.Close()
		}
	}
}

// NewSigner makes an ed25519 key.
func NewSigner(t testing.TB) ssh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
