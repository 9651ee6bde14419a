package systest

import "syscall"

// sysProcAttr makes the kernel kill a node if the test binary dies without
// running its cleanups (a panic or `go test -timeout`), so no node outlives it.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
