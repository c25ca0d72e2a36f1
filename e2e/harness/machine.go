package harness

import (
	"os"
	"strings"
)

// CPU is the processor's model name and the number of logical CPUs, from
// /proc/cpuinfo, so that benchmark figures name the machine they were
// measured on. Without /proc/cpuinfo it is "unknown CPU" and 0.
func CPU() (model string, count int) {
	model = "unknown CPU"
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return model, 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		switch strings.TrimSpace(k) {
		case "processor":
			count++
		case "model name":
			if count == 1 {
				model = strings.TrimSpace(v)
			}
		}
	}
	return model, count
}
