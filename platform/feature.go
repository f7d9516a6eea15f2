package platform

// UnsupportedFeatureError says which enforcement feature this OS or kernel
// lacks, so the agent can tell the control plane what it can enforce. It
// matches ErrNotSupported with errors.Is.
type UnsupportedFeatureError struct {
	// Feature names what is missing, e.g. "nftables interval sets with element timeouts".
	Feature string
	// MinimumKernel is the first kernel that has the feature, when it is a
	// matter of version (e.g. "Linux 4.18"); empty otherwise.
	MinimumKernel string
	// Err is what the probe saw, if anything.
	Err error
}

// Error says what is missing and, if known, since when kernels have it.
func (e *UnsupportedFeatureError) Error() string {
	s := e.Feature + " not supported"
	if e.MinimumKernel != "" {
		s += " (requires " + e.MinimumKernel + ")"
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap lets errors.Is match both ErrNotSupported and the underlying cause.
func (e *UnsupportedFeatureError) Unwrap() []error {
	if e.Err == nil {
		return []error{ErrNotSupported}
	}
	return []error{ErrNotSupported, e.Err}
}
