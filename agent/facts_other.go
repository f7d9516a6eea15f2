//go:build !linux

package agent

// osVersion and machineSerial are read from the MDM on these systems for
// now; the MDM passes the serial with --serial.
func osVersion() string     { return "" }
func machineSerial() string { return "" }
