package doemu_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/shoalci/shoal/internal/clock"
	"github.com/shoalci/shoal/internal/doemu"
	"github.com/shoalci/shoal/internal/doemu/doemutest"
)

// FuzzEmulator throws arbitrary methods, paths, queries and bodies at the
// emulator: it must never panic, never answer 5xx (no faults are configured),
// always answer JSON on /v2, and every answer must still match the contract.
func FuzzEmulator(f *testing.F) {
	seeds := []struct{ method, path, query, body string }{
		{"POST", "/v2/droplets", "", `{"name":"a","region":"fra1","size":"s-1vcpu-1gb","image":"ubuntu-24-04-x64"}`},
		{"POST", "/v2/droplets", "", `{"names":["a","b"],"region":"fra1","size":"s-1vcpu-1gb","image":155425106,"tags":["x"]}`},
		{"POST", "/v2/droplets", "", `{"name":1}`},
		{"GET", "/v2/droplets", "page=2&per_page=1", ""},
		{"GET", "/v2/droplets", "page=x", ""},
		{"DELETE", "/v2/droplets", "tag_name=x", ""},
		{"POST", "/v2/droplets/100000001/actions", "", `{"type":"reboot"}`},
		{"POST", "/v2/volumes", "", `{"name":"v","region":"fra1","size_gigabytes":1}`},
		{"POST", "/v2/volumes/actions", "", `{"type":"attach","volume_name":"v","region":"fra1","droplet_id":100000001}`},
		{"PUT", "/v2/databases/x/firewall", "", `{"rules":[{"type":"tag","value":"a"}]}`},
		{"POST", "/v2/account/keys", "", `{"name":"k","public_key":"ssh-ed25519 AAAA"}`},
		{"GET", "/v2/images", "private=true&type=distribution", ""},
		{"GET", "/metadata/v1/id", "droplet_id=100000001", ""},
	}
	for _, s := range seeds {
		f.Add(s.method, s.path, s.query, []byte(s.body))
	}
	emu, err := doemu.New(doemu.Options{Clock: clock.NewVirtual(epoch), Tokens: []string{doemutest.Token},
		RateLimitPerMinute: -1, RateLimitPerHour: -1})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, method, path, query string, body []byte) {
		if !strings.HasPrefix(path, "/") || strings.ContainsAny(path, " ?#\x00") || !validMethod(method) {
			return // not something an HTTP client can send
		}
		req := httptest.NewRequest(method, "http://emulator.test/", bytes.NewReader(body))
		req.URL.Path, req.URL.RawQuery = path, query
		req.Header.Set("Authorization", "Bearer "+doemutest.Token)
		rec := httptest.NewRecorder()
		doemutest.NewValidator(t, emu).ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%s %s?%s → %d: %s", method, path, query, rec.Code, rec.Body)
		}
		if strings.HasPrefix(path, "/v2") && rec.Code != http.StatusNoContent && !json.Valid(rec.Body.Bytes()) {
			t.Fatalf("%s %s → %d with a body that is not JSON: %q", method, path, rec.Code, rec.Body)
		}
	})
}

func validMethod(m string) bool {
	switch m {
	case "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD":
		return true
	}
	return false
}
