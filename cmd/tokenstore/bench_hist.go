package main

import (
	"math/bits"
	"time"
)

// hist is a latency histogram with 32 buckets per power of two (about 3%
// resolution), an exact count and an exact maximum. The zero value is
// empty; it is not safe for concurrent use (each goroutine keeps its own
// and merge adds them up).
type hist struct {
	counts [2048]uint64
	n      uint64
	max    int64
}

const histSub = 5 // 1<<histSub buckets per power of two

func histBucket(v uint64) int {
	if v < 2<<histSub {
		return int(v)
	}
	e := bits.Len64(v) - histSub - 1
	return e<<histSub + int(v>>e)
}

// histValue is the middle of bucket i.
func histValue(i int) int64 {
	if i < 2<<histSub {
		return int64(i)
	}
	e := i>>histSub - 1
	m := int64(i - e<<histSub)
	return m<<e + (int64(1)<<e)/2
}

func (h *hist) record(d time.Duration) {
	v := max(int64(d), 0)
	h.counts[histBucket(uint64(v))]++
	h.n++
	h.max = max(h.max, v)
}

func (h *hist) merge(o *hist) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.max = max(h.max, o.max)
}

// quantile returns the latency below which a fraction q of the samples
// fall (q=1 is the maximum).
func (h *hist) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	if q >= 1 {
		return time.Duration(h.max)
	}
	rank := uint64(q * float64(h.n))
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen > rank {
			return time.Duration(min(histValue(i), h.max))
		}
	}
	return time.Duration(h.max)
}
