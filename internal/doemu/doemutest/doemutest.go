// Package doemutest serves the DigitalOcean emulator for tests, holding every
// response it gives to DigitalOcean's published OpenAPI description: a response
// that does not match the contract fails the test that caused it.
package doemutest

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/digitalocean/godo"
	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"golang.org/x/oauth2"

	"github.com/shoalci/shoal/internal/doemu"
)

// Token is the bearer token test emulators accept.
const Token = "dop_v1_test0000000000000000000000000000000000000000000000000000000000"

// SpecEnv names the environment variable that may point at the OpenAPI file.
const SpecEnv = "SHOAL_DO_OPENAPI"

const specRel = "shared/reference/digitalocean-openapi.yaml"

var (
	specOnce   sync.Once
	specRouter routers.Router
	specErr    error
)

// specPath finds DigitalOcean's OpenAPI description: $SHOAL_DO_OPENAPI, or
// shared/reference/ beside the repository (where CI and developers have it).
func specPath() (string, error) {
	if p := os.Getenv(SpecEnv); p != "" {
		return p, nil
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		p := filepath.Join(dir, specRel)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("%s not found above the working directory; set %s to its path", specRel, SpecEnv)
		}
		dir = parent
	}
}

func router() (routers.Router, error) {
	specOnce.Do(func() {
		var path string
		if path, specErr = specPath(); specErr != nil {
			return
		}
		loader := openapi3.NewLoader()
		var doc *openapi3.T
		if doc, specErr = loader.LoadFromFile(path); specErr != nil {
			specErr = fmt.Errorf("load %s: %w", path, specErr)
			return
		}
		specRouter, specErr = gorillamux.NewRouter(doc)
	})
	return specRouter, specErr
}

// Unspecified lists the paths shoal uses that the OpenAPI subset does not
// describe; their responses are checked by the tests that use them instead.
var Unspecified = []string{"/v2/customers/my/balance", "/metadata/"}

// Validator wraps an emulator handler and checks each response against the spec.
type Validator struct {
	tb   testing.TB
	next http.Handler
}

// NewValidator returns next wrapped with contract checking; failures are reported through tb.
func NewValidator(tb testing.TB, next http.Handler) *Validator {
	tb.Helper()
	if _, err := router(); err != nil {
		tb.Fatalf("DigitalOcean OpenAPI description: %v", err)
	}
	return &Validator{tb: tb, next: next}
}

func (v *Validator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec := httptest.NewRecorder()
	v.next.ServeHTTP(rec, r)
	if err := v.check(r, rec); err != nil {
		v.tb.Errorf("emulator response breaks DigitalOcean's OpenAPI contract: %s %s → %d: %v\nbody: %.600s",
			r.Method, r.URL, rec.Code, err, rec.Body.String())
	}
	for k, vals := range rec.Header() {
		w.Header()[k] = vals
	}
	w.WriteHeader(rec.Code)
	_, _ = w.Write(rec.Body.Bytes())
}

func (v *Validator) check(r *http.Request, rec *httptest.ResponseRecorder) error {
	for _, p := range Unspecified {
		if strings.HasPrefix(r.URL.Path, p) {
			return nil
		}
	}
	rt, _ := router()
	// The spec's server is api.digitalocean.com; match the route as if the request went there.
	probe := r.Clone(context.Background())
	probe.URL.Scheme, probe.URL.Host, probe.Host = "https", "api.digitalocean.com", "api.digitalocean.com"
	route, params, err := rt.FindRoute(probe)
	if err != nil {
		if rec.Code == http.StatusNotFound || rec.Code == http.StatusUnauthorized || rec.Code == http.StatusTooManyRequests ||
			rec.Code >= 500 {
			return nil // an unknown path answered with an error is what DigitalOcean does too
		}
		return fmt.Errorf("no such operation in the spec: %w", err)
	}
	opts := &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true,
		AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}
	// Name the failing field, not the whole schema.
	opts.WithCustomSchemaErrorFunc(func(e *openapi3.SchemaError) string {
		msg := "/" + strings.Join(e.JSONPointer(), "/") + ": " + e.Reason
		if e.Origin != nil {
			msg += " (" + e.Origin.Error() + ")"
		}
		return msg
	})
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: probe, PathParams: params, Route: route, Options: opts},
		Status:                 rec.Code,
		Header:                 rec.Header(),
		Options:                opts,
	}
	in.SetBodyBytes(bytes.Clone(rec.Body.Bytes()))
	return openapi3filter.ValidateResponse(context.Background(), in)
}

// Server is an emulator behind a contract-checking httptest server.
type Server struct {
	*doemu.Server
	URL string
}

// New starts an emulator with opts (Token is always accepted) behind a validator
// and an httptest server closed when the test ends.
func New(tb testing.TB, opts doemu.Options) *Server {
	tb.Helper()
	opts.Tokens = append(opts.Tokens, Token)
	emu, err := doemu.New(opts)
	if err != nil {
		tb.Fatalf("start emulator: %v", err)
	}
	ts := httptest.NewServer(NewValidator(tb, emu))
	tb.Cleanup(ts.Close)
	return &Server{Server: emu, URL: ts.URL}
}

// Godo returns a godo client pointed at the emulator with the test token and
// without godo's own retries, so a test sees every answer the emulator gives.
func (s *Server) Godo(tb testing.TB) *godo.Client {
	tb.Helper()
	return GodoClient(tb, s.URL, Token)
}

// GodoClient returns a godo client for baseURL authenticating with token.
func GodoClient(tb testing.TB, baseURL, token string) *godo.Client {
	tb.Helper()
	httpClient := oauth2.NewClient(context.Background(), oauth2.StaticTokenSource(&oauth2.Token{AccessToken: token}))
	c, err := godo.New(httpClient, godo.SetBaseURL(baseURL+"/"))
	if err != nil {
		tb.Fatalf("godo client: %v", err)
	}
	return c
}
