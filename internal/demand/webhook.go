package demand

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"sync/atomic"

	gitlab "gitlab.com/gitlab-org/api/client-go"
)

// maxHookBody bounds a webhook body; GitLab's Job Hook payloads are a few KiB.
const maxHookBody = 1 << 20

// Webhook receives GitLab Job Hook webhooks and signals, on Pending(), that a
// job has become pending, so the autoscaler reacts at once instead of at its
// next poll. Signals coalesce: one waiting signal stands for any number of
// pending jobs, and the receiver never blocks on a slow consumer.
type Webhook struct {
	secret  [sha256.Size]byte
	pending chan struct{}
	log     *slog.Logger

	watch atomic.Pointer[func(projectID int64) bool]

	received, rejected, signalled, ignored atomic.Int64
}

// NewWebhook returns a receiver that accepts hooks carrying secret in
// X-Gitlab-Token. An empty secret is refused: anyone could wake the autoscaler.
func NewWebhook(secret string, log *slog.Logger) (*Webhook, error) {
	if secret == "" {
		return nil, errors.New("webhook secret is empty: set the same secret token in GitLab's webhook settings and in shoal")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Webhook{secret: sha256.Sum256([]byte(secret)), pending: make(chan struct{}, 1), log: log}, nil
}

// Watch makes pending jobs signal only when watch says their project is
// watched, as Source.Touch does (marking it to be read first): a GitLab
// instance's or group's hook also reports projects shoal does not read, and
// waking for them would only spend requests.
func (w *Webhook) Watch(watch func(projectID int64) bool) { w.watch.Store(&watch) }

// Pending delivers a value when at least one job has become pending since the
// last value was taken.
func (w *Webhook) Pending() <-chan struct{} { return w.pending }

// WebhookStats count what the receiver has seen.
type WebhookStats struct {
	Received  int64 // Job Hooks accepted
	Rejected  int64 // hooks refused (bad token, bad body)
	Signalled int64 // pending jobs reported
	Ignored   int64 // pending jobs of projects not watched (see Watch)
}

// Stats reports the receiver's counters.
func (w *Webhook) Stats() WebhookStats {
	return WebhookStats{Received: w.received.Load(), Rejected: w.rejected.Load(), Signalled: w.signalled.Load(),
		Ignored: w.ignored.Load()}
}

func (w *Webhook) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		rw.Header().Set("Allow", http.MethodPost)
		http.Error(rw, "webhooks are POSTed", http.StatusMethodNotAllowed)
		return
	}
	// Compare digests so that neither the content nor the length of the
	// secret leaks through timing.
	got := sha256.Sum256([]byte(gitlab.HookEventToken(r)))
	if subtle.ConstantTimeCompare(got[:], w.secret[:]) != 1 {
		w.rejected.Add(1)
		w.log.Warn("webhook refused: wrong X-Gitlab-Token", "remote", r.RemoteAddr)
		http.Error(rw, "invalid token", http.StatusUnauthorized)
		return
	}
	if gitlab.HookEventType(r) != gitlab.EventTypeJob {
		// Other events are not ours; answer 200 so GitLab does not disable the hook.
		rw.WriteHeader(http.StatusOK)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxHookBody+1))
	if err != nil || len(body) > maxHookBody {
		w.rejected.Add(1)
		http.Error(rw, "body unreadable or too large", http.StatusBadRequest)
		return
	}
	ev, err := gitlab.ParseWebhook(gitlab.EventTypeJob, body)
	if err != nil {
		w.rejected.Add(1)
		w.log.Warn("webhook refused: bad Job Hook body", "err", err)
		http.Error(rw, "bad Job Hook body", http.StatusBadRequest)
		return
	}
	w.received.Add(1)
	if job, ok := ev.(*gitlab.JobEvent); ok && job.BuildStatus == "pending" {
		if watch := w.watch.Load(); watch != nil && !(*watch)(job.ProjectID) {
			w.ignored.Add(1)
			rw.WriteHeader(http.StatusOK)
			return
		}
		w.signalled.Add(1)
		select {
		case w.pending <- struct{}{}:
		default: // a signal is already waiting
		}
	}
	rw.WriteHeader(http.StatusOK)
}
