package main

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

const day = 24 * time.Hour

// parseDuration reads Go duration syntax ("90m", "36h") plus whole days in
// front ("14d", "1d12h"), since token lifetimes are counted in days.
// Negative durations are refused: no flag of this command takes one.
func parseDuration(s string) (time.Duration, error) {
	bad := func(why string) (time.Duration, error) {
		return 0, fmt.Errorf("invalid duration %q: %s", s, why)
	}
	const syntax = "use Go syntax (90m, 36h) or days (14d, 1d12h)"
	if strings.HasPrefix(s, "-") {
		return bad("must not be negative")
	}
	rest := strings.TrimPrefix(s, "+")
	var d time.Duration
	if i := strings.IndexByte(rest, 'd'); i >= 0 {
		days, err := strconv.ParseUint(rest[:i], 10, 64)
		if err != nil {
			if strings.Contains(rest[:i], ".") {
				return bad("days must be a whole number (1d12h for a day and a half)")
			}
			return bad(syntax)
		}
		if days > uint64(math.MaxInt64/int64(day)) {
			return bad("too long")
		}
		d, rest = time.Duration(days)*day, rest[i+1:]
		if rest == "" {
			return d, nil
		}
	}
	r, err := time.ParseDuration(rest)
	if err != nil {
		return bad(syntax)
	}
	if r < 0 {
		return bad("must not be negative")
	}
	if d > math.MaxInt64-r {
		return bad("too long")
	}
	return d + r, nil
}

// formatDuration writes d the way parseDuration reads it, shortest first:
// "14d", "1d12h", "1h30m", "1.5s".
func formatDuration(d time.Duration) string {
	if d < 0 {
		return "-" + formatDuration(-d)
	}
	days, rest := d/day, d%day
	s := ""
	if days > 0 {
		s = strconv.FormatInt(int64(days), 10) + "d"
		if rest == 0 {
			return s
		}
	}
	r := rest.String()
	if strings.HasSuffix(r, "m0s") {
		r = r[:len(r)-2]
	}
	if strings.HasSuffix(r, "h0m") {
		r = r[:len(r)-2]
	}
	return s + r
}

// durationValue is a pflag.Value for parseDuration's syntax.
type durationValue time.Duration

func (v *durationValue) Set(s string) error {
	d, err := parseDuration(s)
	if err != nil {
		return err
	}
	*v = durationValue(d)
	return nil
}

func (v *durationValue) String() string {
	if *v == 0 {
		return ""
	}
	return formatDuration(time.Duration(*v))
}

func (v *durationValue) Type() string { return "duration" }
