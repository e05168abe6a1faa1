package glemu

import (
	"net/http"
	"net/http/httptest"
)

// Transport returns an http.RoundTripper that serves requests from this
// emulator in-process, without sockets. A simulator gives it to client-go
// (gitlab.WithHTTPClient(&http.Client{Transport: s.Transport()})) so that a
// week of polling costs function calls, not loopback round trips, while still
// going through client-go's real request and response handling.
func (s *Server) Transport() http.RoundTripper { return transport{s} }

type transport struct{ s *Server }

func (t transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		defer req.Body.Close()
	}
	rec := httptest.NewRecorder()
	t.s.ServeHTTP(rec, req)
	resp := rec.Result()
	resp.Request = req
	return resp, nil
}
