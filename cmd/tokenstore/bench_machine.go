package main

import (
	"os"
	"runtime"
	"strconv"
	"strings"
)

// machineReport says where the bench ran.
type machineReport struct {
	GOOS       string `json:"goos"`
	GOARCH     string `json:"goarch"`
	CPU        string `json:"cpu,omitempty"`
	CPUs       int    `json:"cpus"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	GoVersion  string `json:"go_version"`
}

func thisMachine() machineReport {
	return machineReport{
		GOOS: runtime.GOOS, GOARCH: runtime.GOARCH, CPU: cpuModel(), CPUs: runtime.NumCPU(),
		GOMAXPROCS: runtime.GOMAXPROCS(0), GoVersion: runtime.Version(),
	}
}

// cpuModel is the CPU's name where the system says it, as go test prints
// it; "" elsewhere.
func cpuModel() string {
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// peakRSS is the process's peak resident memory, from /proc/self/status
// where there is one, else what the Go runtime obtained from the system.
func peakRSS() int64 {
	if v, ok := procField("/proc/self/status", "VmHWM"); ok {
		return v << 10 // kB
	}
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.Sys)
}

// bytesWritten is /proc/self/io's wchar: the bytes this process has passed
// to write(2) and pwrite(2), which is how bbolt writes its pages and meta
// pages (it reads through mmap and never writes through it). It is counted
// when the call is made, so it does not depend on the file system (tmpfs
// included) or on when the kernel writes the page cache back, as
// write_bytes does. It also counts the bench's own progress lines: a few
// hundred bytes per run. ok is false where there is no /proc.
func bytesWritten() (n int64, ok bool) { return procField("/proc/self/io", "wchar") }

// procField reads the number after "key:" in a /proc file.
func procField(path, key string) (int64, bool) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, key+":"); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}
