package platform

import "github.com/toktra/toktra/internal/clock"

// Clock tells the time (the project's clock.Clock). Constructors take one
// so that tests can control time instead of sleeping; nil means the system
// clock.
type Clock = clock.Clock

func clockOrSystem(c Clock) Clock {
	if c == nil {
		return clock.Real{}
	}
	return c
}
