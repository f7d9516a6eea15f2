//go:build unix && !linux

package pgtest

import (
	"errors"
	"syscall"
)

// serverSysProcAttr runs the server as cred, in its own process group (a ^C
// to the tests does not reach it before Main's orderly stop). Without
// Linux's parent-death signal, a server whose test binary is killed keeps
// running until stopped by hand.
func serverSysProcAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: cred, Setpgid: true}
}

// freeBytes is not measured here, so clusters stay in the temporary
// directory.
func freeBytes(string) (uint64, error) {
	return 0, errors.New("free space not measured on this system")
}
