//go:build !linux

package systest

import "syscall"

// sysProcAttr: outside Linux there is no parent-death signal; the test
// cleanups are the only guard against leaked nodes.
func sysProcAttr() *syscall.SysProcAttr { return nil }
