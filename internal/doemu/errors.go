package doemu

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"net/http"
)

// apiError is DigitalOcean's error body.
type apiError struct {
	ID        string `json:"id"`
	Message   string `json:"message"`
	RequestID string `json:"request_id,omitempty"`
}

func writeError(w http.ResponseWriter, status int, id, message string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(apiError{ID: id, Message: message, RequestID: w.Header().Get("X-Request-Id")})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// Common errors, worded as DigitalOcean words them.
func notFound(w http.ResponseWriter) {
	writeError(w, http.StatusNotFound, "not_found", "The resource you requested could not be found.")
}

func badRequest(w http.ResponseWriter, message string) {
	writeError(w, http.StatusBadRequest, "bad_request", message)
}

func unprocessable(w http.ResponseWriter, message string) {
	writeError(w, http.StatusUnprocessableEntity, "unprocessable_entity", message)
}

func conflict(w http.ResponseWriter, message string) {
	writeError(w, http.StatusConflict, "conflict", message)
}

// decodeBody reads a JSON request body into v, answering 400 itself when the body
// is not JSON or has wrong types; it reports whether the handler should go on.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
	if err := json.NewDecoder(r.Body).Decode(v); err != nil {
		badRequest(w, "unable to parse request body: "+jsonProblem(err))
		return false
	}
	return true
}

// jsonProblem describes a decoding error without echoing the body back.
func jsonProblem(err error) string {
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case errors.As(err, &typeErr):
		if typeErr.Field != "" {
			return "field " + typeErr.Field + " must be " + typeErr.Type.String()
		}
		return "wrong type, expected " + typeErr.Type.String()
	case errors.As(err, &syntaxErr):
		return "malformed JSON"
	default:
		return err.Error()
	}
}

func constantTimeEqual(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}
