// Package inproc serves HTTP requests from an http.Handler in-process, without
// sockets: a simulator hands it to godo and client-go so that a week of API
// traffic costs function calls, not loopback round trips, while every request
// still goes through the real clients' request and response handling.
package inproc

import (
	"net/http"
	"net/http/httptest"
)

// Transport returns an http.RoundTripper answering every request with h.
func Transport(h http.Handler) http.RoundTripper { return transport{h} }

type transport struct{ h http.Handler }

func (t transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		defer req.Body.Close()
	}
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, req)
	resp := rec.Result()
	resp.Request = req
	return resp, nil
}
