package api

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/toktra/toktra/controlplane/lockout"
	"github.com/toktra/toktra/controlplane/store"
	"github.com/toktra/toktra/controlplane/triggers"
)

// Stable error codes. Clients match on these, never on messages.
const (
	CodeInvalidArgument  = "invalid_argument"
	CodeUnauthenticated  = "unauthenticated"
	CodePermissionDenied = "permission_denied"
	CodeNotFound         = "not_found"
	CodeConflict         = "conflict"
	CodeUnknownUser      = "unknown_user"
	CodeMethodNotAllowed = "method_not_allowed"
	CodeTooLarge         = "request_too_large"
	CodeRateLimited      = "rate_limited"
	CodeInternal         = "internal"
)

// Error is an API error: an HTTP status, a stable code and a message.
type Error struct {
	Status  int
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

func invalid(msg string) *Error {
	return &Error{Status: http.StatusBadRequest, Code: CodeInvalidArgument, Message: msg}
}

// toAPIError maps any error to its API form, in one place.
func toAPIError(err error) *Error {
	var (
		ae *Error
		ie *triggers.InvalidError
	)
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.Is(err, store.ErrNotFound):
		return &Error{Status: http.StatusNotFound, Code: CodeNotFound, Message: "not found"}
	case errors.Is(err, store.ErrConflict):
		return &Error{Status: http.StatusConflict, Code: CodeConflict, Message: "conflicts with the current state"}
	case errors.Is(err, store.ErrInvalidCursor):
		return &Error{Status: http.StatusBadRequest, Code: CodeInvalidArgument, Message: "cursor: not a cursor this API returned"}
	case errors.As(err, &ie):
		return invalid(ie.Msg)
	case errors.Is(err, lockout.ErrUnknownUser):
		return &Error{Status: http.StatusNotFound, Code: CodeUnknownUser, Message: "no user with that email in this organization"}
	default:
		return &Error{Status: http.StatusInternalServerError, Code: CodeInternal, Message: "internal error"}
	}
}

type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	if status == http.StatusNoContent {
		return
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, e *Error) {
	var b errorBody
	b.Error.Code = e.Code
	b.Error.Message = e.Message
	writeJSON(w, e.Status, b)
}
