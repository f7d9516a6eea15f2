package platform

import (
	"errors"
	"syscall"
	"testing"
)

func TestUnsupportedFeatureError(t *testing.T) {
	t.Parallel()
	err := error(&UnsupportedFeatureError{Feature: "nftables interval sets with element timeouts", MinimumKernel: "Linux 4.18", Err: syscall.EOPNOTSUPP})
	if !errors.Is(err, ErrNotSupported) || !errors.Is(err, syscall.EOPNOTSUPP) {
		t.Errorf("errors.Is(%v, ErrNotSupported / EOPNOTSUPP) = false; want true", err)
	}
	const want = "nftables interval sets with element timeouts not supported (requires Linux 4.18): operation not supported"
	if got := err.Error(); got != want {
		t.Errorf("Error() = %q; want %q", got, want)
	}
	if err := error(&UnsupportedFeatureError{Feature: "nftables (Linux only)"}); !errors.Is(err, ErrNotSupported) || err.Error() != "nftables (Linux only) not supported" {
		t.Errorf("bare UnsupportedFeatureError = %q; want it to match ErrNotSupported", err)
	}
}
