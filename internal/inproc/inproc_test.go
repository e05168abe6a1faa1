package inproc_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/shoalci/shoal/internal/inproc"
)

func TestTransportServesFromTheHandler(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Path", r.URL.Path)
		w.WriteHeader(http.StatusTeapot)
		_, _ = w.Write([]byte(r.Method + " " + string(body)))
	})
	c := &http.Client{Transport: inproc.Transport(h)}
	resp, err := c.Post("http://anywhere.invalid/a/b", "text/plain", strings.NewReader("hello"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusTeapot || resp.Header.Get("X-Path") != "/a/b" || string(body) != "POST hello" || resp.Request == nil {
		t.Fatalf("%d %v %q", resp.StatusCode, resp.Header, body)
	}
}
