package mqttbench

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat.
// It is 100 on every Linux architecture Go supports; reading it would need
// sysconf(_SC_CLK_TCK), i.e. cgo, for a constant.
const clockTicks = 100

// ProcSample is what /proc says about a process at one moment.
type ProcSample struct {
	PID     int
	Comm    string
	CPU     time.Duration // user + system time since the process started
	RSSKiB  int64         // VmRSS
	PeakKiB int64         // VmHWM: peak RSS since start or since ResetPeak
	Threads int
}

// SampleProc reads /proc/<pid>/stat and /proc/<pid>/status.
func SampleProc(pid int) (ProcSample, error) {
	s := ProcSample{PID: pid}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, err
	}
	// comm is in parentheses and may hold spaces and ')': the fields after
	// it start after the last ')'.
	open, end := strings.IndexByte(string(stat), '('), strings.LastIndexByte(string(stat), ')')
	if open < 0 || end < open {
		return s, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	s.Comm = string(stat[open+1 : end])
	f := strings.Fields(string(stat[end+1:]))
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return s, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return s, fmt.Errorf("/proc/%d/stat: bad utime/stime %q %q", pid, f[11], f[12])
	}
	s.CPU = time.Duration(ut+st) * time.Second / clockTicks
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		fv := strings.Fields(v)
		if len(fv) == 0 {
			continue
		}
		n, _ := strconv.ParseInt(fv[0], 10, 64)
		switch k {
		case "VmRSS":
			s.RSSKiB = n
		case "VmHWM":
			s.PeakKiB = n
		case "Threads":
			s.Threads = int(n)
		}
	}
	return s, nil
}

// ResetPeak resets the process's peak RSS (VmHWM) to its current RSS, so a
// later sample shows the peak of one phase rather than of its whole life.
// Linux ≥ 4.0; needs the right to write /proc/<pid>/clear_refs (same user).
func ResetPeak(pid int) error {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0)
}

// ProcUsage is a process's cost over one phase.
type ProcUsage struct {
	Name    string        `json:"name"`
	PID     int           `json:"pid"`
	CPU     time.Duration `json:"cpu_ns"`
	PeakKiB int64         `json:"peak_rss_kib"`
	EndKiB  int64         `json:"rss_kib"`
	Err     string        `json:"error,omitempty"`
}

// Watch measures named processes over a phase: call Done at its end.
type Watch struct {
	names  []string
	before []ProcSample
	errs   []error
}

// WatchProcs resets the peak RSS of each pid and records its CPU time.
// pids with value 0 are skipped.
func WatchProcs(pids map[string]int) *Watch {
	w := &Watch{}
	names := make([]string, 0, len(pids))
	for name := range pids {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		pid := pids[name]
		if pid == 0 {
			continue
		}
		resetErr := ResetPeak(pid)
		s, err := SampleProc(pid)
		if err == nil && resetErr != nil {
			err = fmt.Errorf("peak RSS covers the process's whole life: %v", resetErr)
		}
		w.names, w.before, w.errs = append(w.names, name), append(w.before, s), append(w.errs, err)
	}
	return w
}

// Done samples every watched process again.
func (w *Watch) Done() []ProcUsage {
	var out []ProcUsage
	for i, b := range w.before {
		u := ProcUsage{Name: w.names[i], PID: b.PID}
		a, err := SampleProc(b.PID)
		switch {
		case err != nil:
			u.Err = "gone: " + err.Error()
		default:
			u.CPU, u.PeakKiB, u.EndKiB = a.CPU-b.CPU, a.PeakKiB, a.RSSKiB
			if w.errs[i] != nil {
				u.Err = w.errs[i].Error()
			}
		}
		out = append(out, u)
	}
	return out
}
