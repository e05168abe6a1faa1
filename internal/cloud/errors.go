package cloud

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Errors to test for with errors.Is.
var (
	ErrNotFound           = errors.New("not found")
	ErrUnauthorized       = errors.New("unauthorized: check DIGITALOCEAN_ACCESS_TOKEN")
	ErrRateLimited        = errors.New("rate limited")
	ErrPendingEvent       = errors.New("resource already has a pending event")
	ErrAlreadyAttached    = errors.New("volume already attached")
	ErrAttachmentNotFound = errors.New("volume attachment not found")
	ErrAlreadyExists      = errors.New("already exists")
	ErrAttached           = errors.New("volume is attached")
	ErrInvalid            = errors.New("request rejected as invalid")
	ErrServer             = errors.New("DigitalOcean server error")
	ErrActionErrored      = errors.New("action ended errored")
	// ErrBudget: the caller's rate budget (WithBudget) allowed no more requests.
	ErrBudget = errors.New("rate budget spent: the rest waits for the next reconcile")

	// errMaybeMade marks a failed create after an earlier try whose answer
	// may have made Droplets all the same (MayHaveTakenEffect).
	errMaybeMade = errors.New("an earlier try may have made them")
)

// APIError is an error answer from DigitalOcean's API.
type APIError struct {
	Method, URL string
	Status      int
	ID          string // DigitalOcean's error id, e.g. "not_found"
	Message     string
	RequestID   string
	RetryAfter  time.Duration // on 429
	kind        error
}

func (e *APIError) Error() string {
	msg := fmt.Sprintf("%s %s: %d %s", e.Method, e.URL, e.Status, e.Message)
	if e.RequestID != "" {
		msg += " (request " + e.RequestID + ")"
	}
	return msg
}

// Is makes errors.Is(err, ErrNotFound) and the like work.
func (e *APIError) Is(target error) bool { return e.kind != nil && target == e.kind }

// classify picks the sentinel an API error answers to, from its status and,
// for 422s and 409s, DigitalOcean's wording.
func classify(status int, message string) error {
	m := strings.ToLower(message)
	switch {
	case status == http.StatusNotFound:
		return ErrNotFound
	case status == http.StatusUnauthorized:
		return ErrUnauthorized
	case status == http.StatusTooManyRequests:
		return ErrRateLimited
	case status >= 500:
		return ErrServer
	case strings.Contains(m, "pending event"):
		return ErrPendingEvent
	case strings.Contains(m, "already attached"):
		return ErrAlreadyAttached
	case strings.Contains(m, "attachment not found"):
		return ErrAttachmentNotFound
	case status == http.StatusConflict && strings.Contains(m, "attached"):
		return ErrAttached
	case status == http.StatusConflict || strings.Contains(m, "already exists") || strings.Contains(m, "already in use"):
		return ErrAlreadyExists
	case status == http.StatusUnprocessableEntity || status == http.StatusBadRequest:
		return ErrInvalid
	}
	return nil
}
