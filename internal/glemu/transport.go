package glemu

import (
	"net/http"

	"github.com/shoalci/shoal/internal/inproc"
)

// Transport returns an http.RoundTripper that serves requests from this
// emulator in-process, without sockets: give it to client-go with
// gitlab.WithHTTPClient(&http.Client{Transport: s.Transport()}).
func (s *Server) Transport() http.RoundTripper { return inproc.Transport(s) }
