package redisstore_test

import "syscall"

// sysProcAttr makes the kernel kill redis-server when the test binary
// dies, even by a panic or a timeout that skips TestMain's cleanup.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
