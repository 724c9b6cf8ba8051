package main

import "syscall"

// On Linux the kernel kills serve when the test process dies, so a crashed
// or killed test run leaves no server holding its ports.
func init() {
	serveProcAttr = func() *syscall.SysProcAttr { return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} }
}
