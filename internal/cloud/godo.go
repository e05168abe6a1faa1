package cloud

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/digitalocean/godo"
	"golang.org/x/oauth2"

	"github.com/shoalci/shoal/internal/clock"
)

// Config configures the godo-backed Cloud.
type Config struct {
	// Token is the API token; see TokenFromEnv.
	Token string
	// APIURL is the API's base URL; empty means https://api.digitalocean.com/.
	// Point it at `shoal emulate` to work offline.
	APIURL string
	// HTTPClient's transport carries the requests and its Timeout bounds each;
	// nil means http.DefaultTransport and RequestTimeout.
	HTTPClient *http.Client
	// Clock paces retries and action polling. Default real time.
	Clock clock.Clock
	// MaxRetries bounds retries of one request after 429s, 5xx and network errors. Default 5.
	MaxRetries int
	// PollInterval is how often an action is checked while it runs. Default 2 s.
	PollInterval time.Duration
}

// RequestTimeout bounds a request on the default HTTP client: an API that
// accepts a connection and never answers must not hold shoal for good.
const RequestTimeout = 30 * time.Second

// TokenFromEnv reads the token the way doctl and godo's examples do.
func TokenFromEnv() (string, error) {
	for _, name := range []string{"DIGITALOCEAN_ACCESS_TOKEN", "DIGITALOCEAN_TOKEN"} {
		if t := strings.TrimSpace(os.Getenv(name)); t != "" {
			return t, nil
		}
	}
	return "", errors.New("no DigitalOcean API token: set DIGITALOCEAN_ACCESS_TOKEN (create one under API in the control panel, or use the one `shoal emulate` prints)")
}

// APIURLFromEnv is $DIGITALOCEAN_API_URL: empty for DigitalOcean itself, or an
// emulator's URL as `shoal emulate` prints it.
func APIURLFromEnv() string { return strings.TrimSpace(os.Getenv("DIGITALOCEAN_API_URL")) }

// DO is the Cloud on godo.
type DO struct {
	c     *godo.Client
	clock clock.Clock
	cfg   Config

	requests atomic.Int64

	mu   sync.Mutex
	rate Rate
}

var _ Cloud = (*DO)(nil)

// New returns a Cloud talking to DigitalOcean (or an emulator) through godo.
func New(cfg Config) (*DO, error) {
	if cfg.Token == "" {
		return nil, errors.New("no DigitalOcean API token given")
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.MaxRetries == 0 {
		cfg.MaxRetries = 5
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = 2 * time.Second
	}
	base, timeout := http.DefaultTransport, RequestTimeout
	if cfg.HTTPClient != nil {
		timeout = cfg.HTTPClient.Timeout
		if cfg.HTTPClient.Transport != nil {
			base = cfg.HTTPClient.Transport
		}
	}
	// godo's own retries (go-retryablehttp) sleep in real time and would repeat a
	// create blindly; shoal retries itself, on its clock, knowing what is safe.
	httpClient := &http.Client{Timeout: timeout, Transport: &oauth2.Transport{
		Source: oauth2.StaticTokenSource(&oauth2.Token{AccessToken: cfg.Token}), Base: base}}
	opts := []godo.ClientOpt{godo.SetUserAgent("shoal")}
	if cfg.APIURL != "" {
		opts = append(opts, godo.SetBaseURL(strings.TrimRight(cfg.APIURL, "/")+"/"))
	}
	c, err := godo.New(httpClient, opts...)
	if err != nil {
		return nil, fmt.Errorf("DigitalOcean client: %w", err)
	}
	return &DO{c: c, clock: cfg.Clock, cfg: cfg}, nil
}

// Requests counts the API requests made so far, retries included.
func (d *DO) Requests() int64 { return d.requests.Load() }

// Rate returns the rate-limit state the latest response reported.
func (d *DO) Rate() Rate {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.rate
}

type budgetKey struct{}

// WithBudget returns a context under which every request the cloud layer
// sends, retries and the lookups after a failed create included, first asks
// allow. When it says no, the call fails with ErrBudget (wrapping the last
// error, if a try had failed): a caller's rate budget holds through retries.
func WithBudget(ctx context.Context, allow func() bool) context.Context {
	return context.WithValue(ctx, budgetKey{}, allow)
}

// call runs one API request with retries. Requests that change nothing, or that
// DigitalOcean did not process (429), are retried; a failed POST otherwise is not,
// because it may have taken effect.
func (d *DO) call(ctx context.Context, idempotent bool, fn func() (*godo.Response, error)) error {
	allow, _ := ctx.Value(budgetKey{}).(func() bool)
	var last error
	for attempt := 0; ; attempt++ {
		if allow != nil && !allow() {
			return &budgetError{before: last} // before is nil when nothing was sent
		}
		d.requests.Add(1)
		resp, err := fn()
		d.noteRate(resp)
		if err == nil {
			return nil
		}
		err = apiError(resp, err)
		last = err
		var retry bool
		var wait time.Duration
		switch {
		case errors.Is(err, ErrRateLimited):
			retry, wait = true, max(retryAfter(err), time.Second)
		case errors.Is(err, ErrServer) || isTransport(err):
			retry, wait = idempotent, backoff(attempt)
		}
		if !retry || attempt >= d.cfg.MaxRetries {
			return err
		}
		if serr := d.clock.Sleep(ctx, wait); serr != nil {
			return fmt.Errorf("%w (gave up waiting to retry: %v)", err, serr)
		}
	}
}

func backoff(attempt int) time.Duration {
	return min(time.Second<<attempt, 30*time.Second)
}

func retryAfter(err error) time.Duration {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.RetryAfter
	}
	return 0
}

// isTransport: no answer came (a connection error, a lost response). A call
// the rate budget stopped was never sent, and a cancelled one is the caller's.
func isTransport(err error) bool {
	var ae *APIError
	return !errors.As(err, &ae) && !errors.Is(err, ErrBudget) && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
}

// budgetError is ErrBudget, and the error of the try before, if one failed.
type budgetError struct{ before error }

func (e *budgetError) Error() string {
	if e.before == nil {
		return ErrBudget.Error()
	}
	return ErrBudget.Error() + ": " + e.before.Error()
}
func (e *budgetError) Is(target error) bool { return target == ErrBudget }
func (e *budgetError) Unwrap() error        { return e.before }

// MayHaveTakenEffect reports whether a failed request may have been carried
// out all the same: DigitalOcean answered with a server error, or no whole
// answer came (a lost or cut-off response, a timeout), or, for a create, an
// earlier try of it got such an answer. Refused requests (an API error below
// 500) were not, and neither was a request the rate budget stopped before it
// was sent.
func MayHaveTakenEffect(err error) bool {
	var api *APIError
	var budget *budgetError
	switch {
	case err == nil:
		return false
	case errors.Is(err, errMaybeMade):
		return true
	case errors.As(err, &api):
		return errors.Is(err, ErrServer)
	case errors.As(err, &budget):
		return budget.before != nil && MayHaveTakenEffect(budget.before)
	case errors.Is(err, ErrInvalid):
		return false // refused before it was sent
	}
	return true
}

func (d *DO) noteRate(resp *godo.Response) {
	if resp == nil || resp.Rate.Limit == 0 {
		return
	}
	d.mu.Lock()
	d.rate = Rate{Limit: resp.Rate.Limit, Remaining: resp.Rate.Remaining, Reset: resp.Rate.Reset.Time}
	d.mu.Unlock()
}

// apiError turns godo's error into an *APIError that answers errors.Is for its kind.
func apiError(resp *godo.Response, err error) error {
	var er *godo.ErrorResponse
	if !errors.As(err, &er) || er.Response == nil {
		return err
	}
	ae := &APIError{Status: er.Response.StatusCode, Message: er.Message, RequestID: er.RequestID}
	if er.Response.Request != nil {
		ae.Method, ae.URL = er.Response.Request.Method, er.Response.Request.URL.Redacted()
	}
	if resp != nil {
		if s, err := strconv.Atoi(resp.Header.Get("retry-after")); err == nil {
			ae.RetryAfter = time.Duration(s) * time.Second
		}
	}
	ae.kind = classify(ae.Status, ae.Message)
	return ae
}

// listAll pages through a list, 200 at a time (DigitalOcean's maximum).
func listAll[T any](ctx context.Context, d *DO, what string, page func(opt *godo.ListOptions) ([]T, *godo.Response, error)) ([]T, error) {
	var all []T
	opt := &godo.ListOptions{Page: 1, PerPage: 200}
	for {
		var items []T
		var resp *godo.Response
		err := d.call(ctx, true, func() (*godo.Response, error) {
			var err error
			items, resp, err = page(opt)
			return resp, err
		})
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", what, err)
		}
		all = append(all, items...)
		if resp.Links == nil || resp.Links.IsLastPage() || len(items) == 0 {
			return all, nil
		}
		opt.Page++
	}
}

func (d *DO) Account(ctx context.Context) (Account, error) {
	var a *godo.Account
	err := d.call(ctx, true, func() (resp *godo.Response, err error) {
		a, resp, err = d.c.Account.Get(ctx)
		return resp, err
	})
	if err != nil {
		return Account{}, fmt.Errorf("get account: %w", err)
	}
	return Account{Email: a.Email, Status: a.Status, DropletLimit: a.DropletLimit, VolumeLimit: a.VolumeLimit}, nil
}

func (d *DO) MonthToDateUsage(ctx context.Context) (float64, error) {
	var b *godo.Balance
	err := d.call(ctx, true, func() (resp *godo.Response, err error) {
		b, resp, err = d.c.Balance.Get(ctx)
		return resp, err
	})
	if err != nil {
		return 0, fmt.Errorf("get balance: %w", err)
	}
	usd, err := strconv.ParseFloat(b.MonthToDateUsage, 64)
	if err != nil {
		return 0, fmt.Errorf("balance month_to_date_usage %q: %w", b.MonthToDateUsage, err)
	}
	return usd, nil
}

// waitAction polls an action on the clock until it is no longer in progress.
func (d *DO) waitAction(ctx context.Context, a *godo.Action) (Action, error) {
	for a.Status == godo.ActionInProgress {
		if err := d.clock.Sleep(ctx, d.cfg.PollInterval); err != nil {
			return toAction(a), fmt.Errorf("wait for %s action %d: %w", a.Type, a.ID, err)
		}
		id := a.ID
		err := d.call(ctx, true, func() (resp *godo.Response, err error) {
			a, resp, err = d.c.Actions.Get(ctx, id)
			return resp, err
		})
		if err != nil {
			return Action{}, fmt.Errorf("get action %d: %w", id, err)
		}
	}
	if a.Status == "errored" {
		return toAction(a), fmt.Errorf("%s action %d: %w", a.Type, a.ID, ErrActionErrored)
	}
	return toAction(a), nil
}

func toAction(a *godo.Action) Action {
	out := Action{ID: a.ID, Type: a.Type, Status: a.Status}
	if a.StartedAt != nil {
		out.StartedAt = a.StartedAt.Time
	}
	if a.CompletedAt != nil {
		out.CompletedAt = a.CompletedAt.Time
	}
	return out
}
