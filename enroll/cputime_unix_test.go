//go:build unix

package enroll_test

import (
	"syscall"
	"time"
)

// cpuTime is the process's user + system CPU time so far. Benchmarks report
// it per op next to wall time: on a shared machine, wall time measures the
// neighbours too; CPU time does not, and wall - CPU is time spent waiting.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
