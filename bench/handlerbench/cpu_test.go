//go:build bench

package handlerbench

import (
	"syscall"
	"testing"
	"time"
)

// cpuClock measures the CPU time (user + system) of the whole process
// across a benchmark loop: the handlers, the in-process backends and the
// garbage collector. On a shared machine it moves much less than ns/op,
// which is wall time and counts the time the benchmark waits for a core.
type cpuClock struct{ start time.Duration }

func startCPU() cpuClock { return cpuClock{start: processCPU()} }

// report adds the cpu-ns/op metric; call it after the b.Loop loop.
func (c cpuClock) report(b *testing.B) {
	if b.N > 0 {
		b.ReportMetric(float64(processCPU()-c.start)/float64(b.N), "cpu-ns/op")
	}
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
