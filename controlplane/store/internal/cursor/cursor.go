// Package cursor encodes the opaque page cursors of the stores' paged
// lists, the same way in every backend, so a cursor means one thing
// whichever store issued it.
package cursor

import (
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/toktra/toktra/controlplane/store"
)

// ErrInvalid means a cursor was not one the store issued.
var ErrInvalid = store.ErrInvalidCursor

// Encode returns the cursor that continues after the row created at t with
// the given id: base64url of "<unix microseconds>:<id>".
func Encode(t time.Time, id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(t.UnixMicro(), 10) + ":" + id))
}

// Decode returns the creation time (UTC, microseconds) and id that c
// continues after.
func Decode(c string) (time.Time, string, error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return time.Time{}, "", fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	micros, id, ok := strings.Cut(string(b), ":")
	if !ok || id == "" {
		return time.Time{}, "", ErrInvalid
	}
	v, err := strconv.ParseInt(micros, 10, 64)
	if err != nil {
		return time.Time{}, "", fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return time.UnixMicro(v).UTC(), id, nil
}
