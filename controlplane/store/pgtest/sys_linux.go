package pgtest

import "syscall"

// serverSysProcAttr runs the server as cred, in its own process group (a ^C
// to the tests does not reach it before Main's orderly stop), and has the
// kernel stop it if the test binary dies first. The parent-death signal
// fires when the starting thread exits, hence startServer's LockOSThread.
func serverSysProcAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: cred, Setpgid: true, Pdeathsig: syscall.SIGQUIT}
}

// freeBytes is the space available to unprivileged users on path's file
// system.
func freeBytes(path string) (uint64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return 0, err
	}
	return st.Bavail * uint64(st.Bsize), nil
}
