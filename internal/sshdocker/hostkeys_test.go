package sshdocker

import (
	"slices"
	"testing"

	"golang.org/x/crypto/ssh"
)

// The end-to-end tests cannot see the order in which RSA's signature
// algorithms are offered (sshd refuses SHA-1, so any order connects there),
// but an older sshd would accept SHA-1 ssh-rsa if it came first.
func TestHostKeyAlgorithmsOrder(t *testing.T) {
	tests := []struct {
		types []string
		first []string
	}{
		{nil, nil},
		{[]string{ssh.KeyAlgoED25519}, []string{ssh.KeyAlgoED25519}},
		{[]string{ssh.KeyAlgoRSA}, []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}},
		{[]string{ssh.CertAlgoRSAv01}, []string{ssh.CertAlgoRSASHA512v01, ssh.CertAlgoRSASHA256v01, ssh.CertAlgoRSAv01}},
		{[]string{ssh.KeyAlgoED25519, ssh.KeyAlgoECDSA256}, []string{ssh.KeyAlgoED25519, ssh.KeyAlgoECDSA256}},
	}
	for _, tt := range tests {
		got := hostKeyAlgorithms(tt.types)
		if tt.first == nil {
			if got != nil {
				t.Errorf("hostKeyAlgorithms(nil) = %v, want nil (Go's defaults)", got)
			}
			continue
		}
		if len(got) < len(tt.first) || !slices.Equal(got[:len(tt.first)], tt.first) {
			t.Errorf("hostKeyAlgorithms(%v) = %v, want it to start with %v", tt.types, got, tt.first)
		}
		for i, a := range got {
			if slices.Contains(got[i+1:], a) {
				t.Errorf("hostKeyAlgorithms(%v) offers %s twice", tt.types, a)
			}
		}
	}
}
