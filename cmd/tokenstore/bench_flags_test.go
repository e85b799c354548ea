package main

import (
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestBenchMix_Set(t *testing.T) {
	tests := []struct {
		give    string
		want    benchMix
		wantErr string
	}{
		{give: "validate=90,issue=5,revoke=5", want: benchMix{90, 5, 5}},
		{give: " revoke=1 , validate=3 ", want: benchMix{3, 0, 1}},
		{give: "validate=100", want: benchMix{100, 0, 0}},
		{give: "issue=1", want: benchMix{0, 1, 0}},
		{give: "validate=0", wantErr: "every weight is 0"},
		{give: "validate=-1", wantErr: "0 or more"},
		{give: "validate=x", wantErr: "whole number"},
		{give: "lookup=5", wantErr: "want validate=N"},
		{give: "validate", wantErr: "want validate=N"},
		{give: "validate=1,validate=2", wantErr: "twice"},
		{give: "", wantErr: "want validate=N"},
	}
	for _, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			var m benchMix
			err := m.Set(tt.give)
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, m)
		})
	}
}

func TestBenchMix_Pick(t *testing.T) {
	m := benchMix{90, 5, 5}
	r := newTestRand()
	var got [numOps]int
	for range 100_000 {
		got[m.pick(r)]++
	}
	assert.InDelta(t, 90_000, got[opValidate], 1_000)
	assert.InDelta(t, 5_000, got[opIssue], 500)
	assert.InDelta(t, 5_000, got[opRevoke], 500)

	only := benchMix{0, 1, 0}
	for range 100 {
		assert.Equal(t, opIssue, only.pick(r))
	}
}

// --policy reads and prints policies as every other command does: days,
// no "336h0m0s".
func TestPolicyFlag_Set(t *testing.T) {
	tests := []struct {
		give, want string
		wantErr    bool
	}{
		{give: "sliding", want: "sliding(idle=14d, max=30d)"},
		{give: "absolute", want: "absolute(30d)"},
		{give: "absolute(24h)", want: "absolute(1d)"},
		{give: "absolute(36h)", want: "absolute(1d12h)"},
		{give: "sliding(idle=1h, max=720h)", want: "sliding(idle=1h, max=30d)"},
		{give: "sliding(idle=14d, max=30d)", want: "sliding(idle=14d, max=30d)"},
		{give: "sliding(idle=90m)", want: "sliding(idle=1h30m)"},
		{give: "forever", wantErr: true},
		{give: "absolute(0s)", wantErr: true},
		{give: "absolute(1d", wantErr: true},
		{give: "sliding(idle=1h, ttl=2h)", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			var p policyFlag
			err := p.Set(tt.give)
			if tt.wantErr {
				require.ErrorContains(t, err, "want sliding, absolute")
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, p.describe())
		})
	}
	var zero policyFlag
	assert.Equal(t, "sliding(idle=14d, max=30d)", zero.describe(), "the default is named, not \"default\"")
}

func TestTrafficModel_Set(t *testing.T) {
	for _, give := range []string{"returning", "zipf", "hot"} {
		var m trafficModel
		require.NoError(t, m.Set(give))
		assert.Equal(t, give, m.String())
	}
	var m trafficModel
	require.ErrorContains(t, m.Set("cold"), "want returning, zipf or hot")
}

// The clock runs at its speed from where it was set, and stands still
// when stopped: a second of the run is ten minutes of the store's time at
// 600.
func TestBenchClock(t *testing.T) {
	t0 := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	c := newBenchClock(t0)
	assert.Equal(t, t0, c.now())
	c.set(t0.Add(-time.Hour))
	assert.Equal(t, t0.Add(-time.Hour), c.now())

	c.set(t0)
	before := time.Now()
	c.run(600)
	time.Sleep(20 * time.Millisecond) // the clock under test is real time times 600
	got := c.now()
	realElapsed := time.Since(before)
	assert.GreaterOrEqual(t, got.Sub(t0), 600*20*time.Millisecond)
	assert.LessOrEqual(t, got.Sub(t0), 600*realElapsed)
}

// Under --traffic zipf, the first-ranked tokens get most validations;
// otherwise picks are uniform. Revokes are always uniform.
func TestWorker_Pick(t *testing.T) {
	table := newTokenTable(10_000)
	for i := range 10_000 {
		table.add(strconv.Itoa(i), time.Time{})
	}
	slots := table.load()
	top := func(w *worker, op int) int {
		r := newTestRand()
		n := 0
		for range 100_000 {
			sl := w.pick(r, op)
			if i, _ := strconv.Atoi(sl.tok); i < 100 {
				n++
			}
		}
		return n
	}
	assert.Greater(t, top(&worker{table: table, traffic: trafficZipf}, opValidate), 50_000, "1% of the tokens get over half of the validations")
	assert.InDelta(t, 1_000, top(&worker{table: table, traffic: trafficZipf}, opRevoke), 300, "revokes are uniform")
	assert.InDelta(t, 1_000, top(&worker{table: table, traffic: trafficReturning}, opValidate), 300, "uniform picks")

	for _, sl := range slots[:9_990] {
		sl.dead.Store(true)
	}
	w := &worker{table: table, traffic: trafficReturning}
	r := newTestRand()
	found := 0
	for range 1_000 {
		if sl := w.pick(r, opValidate); sl != nil {
			require.False(t, sl.dead.Load(), "a dead slot is never picked")
			found++
		}
	}
	assert.Less(t, found, 1_000, "with 0.1% live, some picks find none (and the worker issues instead)")
}

// use says whether a use is a returning one and keeps the latest use.
func TestTokenSlot_Use(t *testing.T) {
	t0 := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	var sl tokenSlot
	sl.lastUse.Store(t0.UnixNano())
	assert.False(t, sl.use(t0.Add(59*time.Second), time.Minute))
	assert.False(t, sl.use(t0.Add(time.Minute), time.Minute), "a second after the previous use")
	assert.True(t, sl.use(t0.Add(3*time.Minute), time.Minute))
	assert.False(t, sl.use(t0.Add(time.Minute), time.Minute), "an older time (another goroutine's) never moves it back...")
	assert.Equal(t, t0.Add(3*time.Minute).UnixNano(), sl.lastUse.Load(), "...and is not stored")
}

func newTestRand() *rand.Rand { return rand.New(rand.NewPCG(1, 2)) }
