package main

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tokenstore/tokenstore"
)

// positiveInt is an int flag that refuses zero and negative values.
type positiveInt int

func (p *positiveInt) String() string { return strconv.Itoa(int(*p)) }
func (p *positiveInt) Type() string   { return "int" }
func (p *positiveInt) Set(s string) error {
	n, err := strconv.Atoi(strings.ReplaceAll(s, "_", ""))
	if err != nil || n <= 0 {
		return fmt.Errorf("%q is not a positive whole number", s)
	}
	*p = positiveInt(n)
	return nil
}

// positiveDuration is a duration flag, in the syntax of every other
// duration of the command (90s, 1m, 14d), that refuses zero and negative
// values.
type positiveDuration time.Duration

func (p *positiveDuration) String() string { return formatDuration(time.Duration(*p)) }
func (p *positiveDuration) Type() string   { return "duration" }
func (p *positiveDuration) Set(s string) error {
	d, err := parseDuration(s)
	if err != nil || d <= 0 {
		return fmt.Errorf("%q is not a positive duration (e.g. 10s, 1m)", s)
	}
	*p = positiveDuration(d)
	return nil
}

// positiveFloat is a float flag that refuses zero and negative values.
type positiveFloat float64

func (p *positiveFloat) String() string { return strconv.FormatFloat(float64(*p), 'g', -1, 64) }
func (p *positiveFloat) Type() string   { return "number" }
func (p *positiveFloat) Set(s string) error {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || !(f > 0) || math.IsInf(f, 0) {
		return fmt.Errorf("%q is not a positive number", s)
	}
	if f > 1e9 {
		return fmt.Errorf("%q is too fast: at most 1e9 (a second of the run is 31 years of the store's clock)", s)
	}
	*p = positiveFloat(f)
	return nil
}

// Operations of the mix.
const (
	opValidate = iota
	opIssue
	opRevoke
	numOps
)

var opNames = [numOps]string{"validate", "issue", "revoke"}

// benchMix is the relative weight of each operation.
type benchMix [numOps]int

func (m *benchMix) Type() string { return "mix" }

func (m *benchMix) String() string {
	parts := make([]string, numOps)
	for op, name := range opNames {
		parts[op] = fmt.Sprintf("%s=%d", name, m[op])
	}
	return strings.Join(parts, ",")
}

// Set parses "validate=90,issue=5,revoke=5": weights, not necessarily
// summing to 100; an operation left out gets 0.
func (m *benchMix) Set(s string) error {
	var out benchMix
	seen := map[string]bool{}
	for part := range strings.SplitSeq(s, ",") {
		name, val, ok := strings.Cut(strings.TrimSpace(part), "=")
		name = strings.TrimSpace(name)
		op := slices.Index(opNames[:], name)
		if !ok || op < 0 {
			return fmt.Errorf("%q: want validate=N,issue=N,revoke=N", part)
		}
		if seen[name] {
			return fmt.Errorf("%s is given twice", name)
		}
		seen[name] = true
		n, err := strconv.Atoi(strings.TrimSpace(val))
		if err != nil || n < 0 {
			return fmt.Errorf("%s=%s: want a whole number, 0 or more", name, val)
		}
		out[op] = n
	}
	if out.total() == 0 {
		return errors.New("every weight is 0")
	}
	*m = out
	return nil
}

func (m *benchMix) total() int { return m[opValidate] + m[opIssue] + m[opRevoke] }

// pick returns an operation drawn by weight.
func (m *benchMix) pick(r *rand.Rand) int {
	n := r.IntN(m.total())
	for op := range numOps {
		if n < m[op] {
			return op
		}
		n -= m[op]
	}
	return opValidate
}

// trafficModel is the --traffic flag: which tokens are validated, and when
// they were last used.
type trafficModel string

const (
	// trafficReturning: tokens' last uses are spread over the policy's idle
	// window and the store's clock runs --speed times faster than real
	// time, so most validations are a user's first after an idle spell
	// longer than TouchInterval, as on a real site. Tokens are picked
	// uniformly.
	trafficReturning trafficModel = "returning"
	// trafficZipf is trafficReturning with Zipf-distributed popularity: a
	// few tokens get most validations (and are rarely idle), most get few.
	trafficZipf trafficModel = "zipf"
	// trafficHot: every token issued just before the run, the real clock,
	// tokens picked uniformly in a tight loop: almost every validation is a
	// repeat within TouchInterval, the cached path.
	trafficHot trafficModel = "hot"
)

var trafficModels = []trafficModel{trafficReturning, trafficZipf, trafficHot}

func (t *trafficModel) Type() string   { return "model" }
func (t *trafficModel) String() string { return string(*t) }
func (t *trafficModel) Set(s string) error {
	if !slices.Contains(trafficModels, trafficModel(s)) {
		return fmt.Errorf("%q: want returning, zipf or hot", s)
	}
	*t = trafficModel(s)
	return nil
}

// simulated says whether the model runs the store on the fast clock.
func (t trafficModel) simulated() bool { return t != trafficHot }

// policyFlag is the --policy flag: "sliding" and "absolute" are the
// library's defaults (Sliding(14 days, 30 days), Absolute(30 days)), or a
// policy as the rest of the command prints it: "sliding(idle=14d, max=30d)",
// "absolute(24h)".
type policyFlag struct{ p tokenstore.Policy }

func (p *policyFlag) Type() string   { return "policy" }
func (p *policyFlag) String() string { return p.describe() }
func (p *policyFlag) Set(s string) error {
	pol, err := parseBenchPolicy(s)
	if err != nil {
		return fmt.Errorf("%q: want sliding, absolute, or a policy such as \"sliding(idle=14d, max=30d)\" or \"absolute(24h)\"", s)
	}
	p.p = pol
	return nil
}

// policy is the policy the tokens get, never the zero Policy.
func (p policyFlag) policy() tokenstore.Policy {
	if p.p.IsZero() {
		return tokenstore.DefaultPolicy()
	}
	return p.p
}

// describe names the policy as the rest of the command does.
func (p policyFlag) describe() string { return formatPolicy(p.policy()) }

func parseBenchPolicy(s string) (tokenstore.Policy, error) {
	s = strings.TrimSpace(s)
	switch s {
	case "sliding":
		return tokenstore.DefaultPolicy(), nil
	case "absolute":
		return tokenstore.Absolute(30 * day), nil
	}
	name, args, ok := strings.Cut(s, "(")
	args, closed := strings.CutSuffix(args, ")")
	if !ok || !closed {
		return tokenstore.Policy{}, errors.New("no parentheses")
	}
	var p tokenstore.Policy
	switch name {
	case "absolute":
		d, err := parseDuration(strings.TrimSpace(args))
		if err != nil {
			return tokenstore.Policy{}, err
		}
		p = tokenstore.Absolute(d)
	case "sliding":
		var idle, maxLife time.Duration
		for part := range strings.SplitSeq(args, ",") {
			k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
			d, err := parseDuration(strings.TrimSpace(v))
			if !ok || err != nil {
				return tokenstore.Policy{}, errors.New("bad sliding argument")
			}
			switch k {
			case "idle":
				idle = d
			case "max":
				maxLife = d
			default:
				return tokenstore.Policy{}, errors.New("bad sliding argument")
			}
		}
		p = tokenstore.Sliding(idle, maxLife)
	default:
		return tokenstore.Policy{}, errors.New("unknown policy")
	}
	return p, p.Validate()
}
