package redistest

import "syscall"

// sysProcAttr makes the kernel kill redis-server when the test binary
// dies, even by a panic or a timeout that skips its cleanup.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
