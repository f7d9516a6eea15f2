//go:build !linux

package platform

import "context"

// FlowMonitor reports finished connections from connection tracking; on
// this OS it cannot be made.
type FlowMonitor struct{}

func flowsUnsupported() error {
	return &UnsupportedFeatureError{Feature: "connection telemetry (Linux conntrack only)"}
}

// NewFlowMonitor returns an error wrapping ErrNotSupported.
func NewFlowMonitor(FlowMonitorOptions) (*FlowMonitor, error) { return nil, flowsUnsupported() }

// ProbeFlowMonitor returns an error wrapping ErrNotSupported.
func ProbeFlowMonitor(FlowMonitorOptions) error { return flowsUnsupported() }

// Run returns ErrNotSupported.
func (*FlowMonitor) Run(context.Context, func(Flow)) error { return flowsUnsupported() }

// Lost returns 0.
func (*FlowMonitor) Lost() uint64 { return 0 }

// Close does nothing.
func (*FlowMonitor) Close() error { return nil }
