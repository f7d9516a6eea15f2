package platform

import "time"

// Clock tells the time. Constructors take one so that tests can control
// time instead of sleeping; nil means the system clock.
type Clock interface {
	Now() time.Time
}

// systemClock is the Clock used when none is injected.
type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

func clockOrSystem(c Clock) Clock {
	if c == nil {
		return systemClock{}
	}
	return c
}
