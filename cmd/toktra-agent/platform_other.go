//go:build !linux

package main

import (
	"fmt"
	"log/slog"
	"runtime"

	"github.com/toktra/toktra/platform"
)

const defaultStateDir = "toktra-agent-state"

// newPlatform: enforcement on this OS (a pf anchor on macOS, WFP on
// Windows) is not built yet; the agent refuses to run rather than claim a
// lock it cannot enforce.
func newPlatform(*slog.Logger) (osPlatform, error) {
	return osPlatform{}, fmt.Errorf("enforcement on %s: %w", runtime.GOOS, platform.ErrNotSupported)
}
