package reliability_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"pgregory.net/rapid"

	"github.com/tokenstore/tokenstore"
	"github.com/tokenstore/tokenstore/tokenstoretest"
)

// Test 4: a model-based test. rapid drives a real store and an in-memory
// model through random sequences of Issue, IssueBatch, Validate, Lookup,
// Get, List, Revoke, RevokeID, RevokeSubject, Rotate, Sweep, clock moves
// (forward and back) and Close+Reopen, under absolute and sliding policies,
// a per-subject limit, and random TouchInterval and CacheSize; every answer
// must match the model's, and after every step Check must find nothing and
// the token count must match. The long run is rapid's own flags:
// -rapid.checks=20000 -rapid.steps=100.

// modelTok is the model's token.
type modelTok struct {
	token, subject string
	id             uuid.UUID
	created, used  int64 // ms
	policy         tokenstore.Policy
	meta           map[string]string
}

// deadline is the model's own expiry arithmetic, independent of the
// library's Policy.Deadline.
func (m *modelTok) deadline() int64 {
	if !m.policy.IsSliding() {
		return m.created + m.policy.TTL().Milliseconds()
	}
	d := m.used + m.policy.TTL().Milliseconds()
	if capMs := m.policy.MaxLifetime().Milliseconds(); capMs > 0 {
		d = min(d, m.created+capMs)
	}
	return d
}

type modelMachine struct {
	t     *rapid.T
	path  string
	opts  tokenstore.Options
	db    *tokenstore.DB
	clock *tokenstoretest.Clock
	toks  map[string]*modelTok
	order []string // issue order: List's order
	dead  []string // revoked, rotated away or swept: must stay ErrNotFound
	steps *atomic.Int64
}

var (
	modelSubjects = []string{"ann", "bob", "cy", "dee"}
	modelDefault  = tokenstore.Sliding(10*time.Minute, time.Hour)
	modelLimit    = 6
	modelSteps    = []time.Duration{time.Millisecond, 500 * time.Millisecond, time.Second, 30 * time.Second, time.Minute, 10 * time.Minute, time.Hour, 24 * time.Hour}
	modelPolicies = []tokenstore.Policy{
		{}, // the store's default
		tokenstore.Absolute(time.Second), tokenstore.Absolute(time.Minute), tokenstore.Absolute(time.Hour),
		tokenstore.Sliding(time.Second, 0), tokenstore.Sliding(time.Minute, 2*time.Minute), tokenstore.Sliding(time.Hour, 2*time.Hour),
		tokenstore.Sliding(30*time.Second, 0),
	}
)

func (m *modelMachine) now() int64 { return m.clock.Now().UnixMilli() }

func (m *modelMachine) open() {
	db, err := tokenstore.Open(m.path, &m.opts)
	if err != nil {
		m.t.Fatalf("open: %v", err)
	}
	m.db = db
}

func (m *modelMachine) live(subject string) int {
	n := 0
	for _, mt := range m.toks {
		if mt.subject == subject && m.now() < mt.deadline() {
			n++
		}
	}
	return n
}

func (m *modelMachine) add(token string, info tokenstore.Info, subject string, p tokenstore.Policy, meta map[string]string) {
	if p.IsZero() {
		p = modelDefault
	}
	mt := &modelTok{token: token, subject: subject, id: info.ID, created: m.now(), used: m.now(), policy: p, meta: meta}
	m.toks[token] = mt
	m.order = append(m.order, token)
	m.expectInfo("issued", info, mt)
}

func (m *modelMachine) remove(token string) {
	delete(m.toks, token)
	m.order = slices.DeleteFunc(m.order, func(s string) bool { return s == token })
	m.dead = append(m.dead, token)
}

func (m *modelMachine) expectInfo(op string, got tokenstore.Info, want *modelTok) {
	m.t.Helper()
	switch {
	case got.ID != want.id:
		m.t.Fatalf("%s: ID %s, model %s", op, got.ID, want.id)
	case got.Subject != want.subject:
		m.t.Fatalf("%s: subject %q, model %q", op, got.Subject, want.subject)
	case got.CreatedAt.UnixMilli() != want.created:
		m.t.Fatalf("%s: created %d, model %d", op, got.CreatedAt.UnixMilli(), want.created)
	case got.LastUsedAt.UnixMilli() != want.used:
		m.t.Fatalf("%s: last used %d, model %d", op, got.LastUsedAt.UnixMilli(), want.used)
	case got.ExpiresAt.UnixMilli() != want.deadline():
		m.t.Fatalf("%s: expires %d, model %d", op, got.ExpiresAt.UnixMilli(), want.deadline())
	case got.Policy != want.policy:
		m.t.Fatalf("%s: policy %s, model %s", op, got.Policy, want.policy)
	case !maps.Equal(got.Metadata, want.meta) || (got.Metadata == nil) != (want.meta == nil):
		m.t.Fatalf("%s: metadata %v, model %v", op, got.Metadata, want.meta)
	}
}

// expectErr fails unless err is want (nil: no error).
func (m *modelMachine) expectErr(op string, err, want error) {
	m.t.Helper()
	if want == nil && err != nil || want != nil && !errors.Is(err, want) {
		m.t.Fatalf("%s: got %v, model says %v", op, err, want)
	}
}

// pick draws a token: usually one the model holds, sometimes a dead one,
// a never-issued one or a malformed one.
func (m *modelMachine) pick(t *rapid.T) (string, *modelTok) {
	kind := rapid.IntRange(0, 9).Draw(t, "pick")
	switch {
	case kind < 7 && len(m.order) > 0:
		tok := rapid.SampledFrom(m.order).Draw(t, "token")
		return tok, m.toks[tok]
	case kind < 9 && len(m.dead) > 0:
		return rapid.SampledFrom(m.dead).Draw(t, "dead"), nil
	case kind == 9 && len(m.order) > 0:
		tok := rapid.SampledFrom(m.order).Draw(t, "token")
		c := "A"
		if tok[len(tok)-1] == 'A' {
			c = "B"
		}
		return tok[:len(tok)-1] + c, nil // a bad checksum
	}
	f, _ := tokenstore.NewFormat("")
	tok, _ := f.Generate()
	return tok, nil
}

func (m *modelMachine) actions() map[string]func(*rapid.T) {
	ctx := context.Background()
	return map[string]func(*rapid.T){
		"Issue": func(t *rapid.T) {
			subject := rapid.SampledFrom(modelSubjects).Draw(t, "subject")
			p := rapid.SampledFrom(modelPolicies).Draw(t, "policy")
			var meta map[string]string
			if rapid.Bool().Draw(t, "meta") {
				meta = map[string]string{"scope": rapid.SampledFrom([]string{"read", "write", ""}).Draw(t, "scope")}
			}
			tok, info, err := m.db.Issue(ctx, subject, tokenstore.WithPolicy(p), tokenstore.WithMetadata(meta))
			if m.live(subject)+1 > modelLimit {
				m.expectErr("issue", err, tokenstore.ErrTokenLimit)
				return
			}
			m.expectErr("issue", err, nil)
			m.add(tok, info, subject, p, meta)
		},
		"IssueBatch": func(t *rapid.T) {
			subject := rapid.SampledFrom(modelSubjects).Draw(t, "subject")
			n := rapid.IntRange(1, 3).Draw(t, "n")
			reqs := make([]tokenstore.IssueRequest, n)
			for i := range reqs {
				reqs[i] = tokenstore.IssueRequest{Subject: subject, Policy: rapid.SampledFrom(modelPolicies).Draw(t, "policy")}
			}
			out, err := m.db.IssueBatch(ctx, reqs)
			if m.live(subject)+n > modelLimit {
				m.expectErr("issue batch", err, tokenstore.ErrTokenLimit)
				return
			}
			m.expectErr("issue batch", err, nil)
			for i, o := range out {
				m.add(o.Token, o.Info, subject, reqs[i].Policy, nil)
			}
		},
		"Validate": func(t *rapid.T) { m.check(t, true) },
		"Lookup":   func(t *rapid.T) { m.check(t, false) },
		"Get": func(t *rapid.T) {
			_, mt := m.pick(t)
			id := uuid.Must(uuid.NewV7())
			if mt != nil {
				id = mt.id
			}
			info, err := m.db.Get(ctx, id)
			switch {
			case mt == nil:
				m.expectErr("get", err, tokenstore.ErrNotFound)
			case m.now() >= mt.deadline():
				m.expectErr("get", err, tokenstore.ErrExpired)
				m.expectInfo("get expired", info, mt)
			default:
				m.expectErr("get", err, nil)
				m.expectInfo("get", info, mt)
			}
		},
		"List": func(t *rapid.T) {
			subject := rapid.SampledFrom(modelSubjects).Draw(t, "subject")
			got, err := m.db.List(ctx, subject)
			m.expectErr("list", err, nil)
			var want []*modelTok
			for _, tok := range m.order {
				if mt := m.toks[tok]; mt.subject == subject && m.now() < mt.deadline() {
					want = append(want, mt)
				}
			}
			if len(got) != len(want) {
				t.Fatalf("list %s: %d tokens, model %d", subject, len(got), len(want))
			}
			for i := range got {
				m.expectInfo(fmt.Sprintf("list %s [%d]", subject, i), got[i], want[i])
			}
		},
		"Revoke": func(t *rapid.T) {
			tok, mt := m.pick(t)
			err := m.db.Revoke(ctx, tok)
			if mt == nil {
				if !errors.Is(err, tokenstore.ErrNotFound) && !errors.Is(err, tokenstore.ErrMalformed) {
					t.Fatalf("revoke of a token the model does not hold: %v", err)
				}
				return
			}
			m.expectErr("revoke", err, nil)
			m.remove(tok)
		},
		"RevokeID": func(t *rapid.T) {
			tok, mt := m.pick(t)
			if mt == nil {
				m.expectErr("revoke id", m.db.RevokeID(ctx, uuid.Must(uuid.NewV7())), tokenstore.ErrNotFound)
				return
			}
			m.expectErr("revoke id", m.db.RevokeID(ctx, mt.id), nil)
			m.remove(tok)
		},
		"RevokeSubject": func(t *rapid.T) {
			subject := rapid.SampledFrom(modelSubjects).Draw(t, "subject")
			n, err := m.db.RevokeSubject(ctx, subject)
			m.expectErr("revoke subject", err, nil)
			want := 0
			for _, tok := range slices.Clone(m.order) {
				if m.toks[tok].subject == subject {
					m.remove(tok)
					want++
				}
			}
			if n != want {
				t.Fatalf("revoke subject %s: %d, model %d", subject, n, want)
			}
		},
		"Rotate": func(t *rapid.T) {
			tok, mt := m.pick(t)
			newTok, info, err := m.db.Rotate(ctx, tok)
			switch {
			case mt == nil:
				if !errors.Is(err, tokenstore.ErrNotFound) && !errors.Is(err, tokenstore.ErrMalformed) {
					t.Fatalf("rotate of a token the model does not hold: %v", err)
				}
			case m.now() >= mt.deadline():
				m.expectErr("rotate", err, tokenstore.ErrExpired)
			default:
				m.expectErr("rotate", err, nil)
				m.remove(tok)
				m.add(newTok, info, mt.subject, mt.policy, mt.meta)
			}
		},
		"Sweep": func(t *rapid.T) {
			n, err := m.db.Sweep(ctx)
			m.expectErr("sweep", err, nil)
			want := 0
			for _, tok := range slices.Clone(m.order) {
				if m.now() >= m.toks[tok].deadline() {
					m.remove(tok)
					want++
				}
			}
			if n != want {
				t.Fatalf("sweep: %d, model %d", n, want)
			}
		},
		"AdvanceClock": func(t *rapid.T) {
			m.clock.Advance(rapid.SampledFrom(modelSteps).Draw(t, "step"))
		},
		"ClockBack": func(t *rapid.T) {
			m.clock.Set(m.clock.Now().Add(-rapid.SampledFrom(modelSteps[:6]).Draw(t, "back")))
		},
		"Reopen": func(t *rapid.T) {
			if err := m.db.Close(); err != nil {
				t.Fatalf("close: %v", err)
			}
			m.open()
		},
		"": func(t *rapid.T) {
			m.steps.Add(1)
			if got := m.db.Stats().Tokens; got != int64(len(m.toks)) {
				t.Fatalf("Stats().Tokens %d, model %d", got, len(m.toks))
			}
			problems, err := m.db.Check(ctx)
			if err != nil || len(problems) > 0 {
				t.Fatalf("Check: %v %q", err, problems)
			}
		},
	}
}

// check is Validate (use) or Lookup.
func (m *modelMachine) check(t *rapid.T, use bool) {
	tok, mt := m.pick(t)
	op, call := "lookup", m.db.Lookup
	if use {
		op, call = "validate", m.db.Validate
	}
	info, err := call(context.Background(), tok)
	switch {
	case mt == nil:
		if !errors.Is(err, tokenstore.ErrNotFound) && !errors.Is(err, tokenstore.ErrMalformed) {
			t.Fatalf("%s of a token the model does not hold: %v", op, err)
		}
	case m.now() >= mt.deadline():
		m.expectErr(op, err, tokenstore.ErrExpired)
	default:
		m.expectErr(op, err, nil)
		if use && m.now() > mt.used {
			mt.used = m.now()
		}
		m.expectInfo(op, info, mt)
	}
}

func TestModel_StateMachine(t *testing.T) {
	dir := t.TempDir()
	var runs, steps atomic.Int64
	start := time.Now()
	rapid.Check(t, func(rt *rapid.T) {
		clock := tokenstoretest.NewClockAt(epoch)
		m := &modelMachine{
			t:     rt,
			path:  filepath.Join(dir, fmt.Sprintf("model-%d.db", runs.Add(1))),
			clock: clock,
			toks:  map[string]*modelTok{},
			steps: &steps,
			opts: tokenstore.Options{
				Now:                 clock.Now,
				Policy:              modelDefault,
				SweepInterval:       -1, // sweeps are the model's actions
				MaxTokensPerSubject: modelLimit,
				// -1: every Validate writes; 20ms: background writes race
				// with the steps; 1h: uses stay in memory until Close.
				TouchInterval: rapid.SampledFrom([]time.Duration{-1, 20 * time.Millisecond, time.Hour}).Draw(rt, "touch"),
				CacheSize:     rapid.SampledFrom([]int{-1, 1, 0}).Draw(rt, "cache"),
			},
		}
		m.open()
		rt.Cleanup(func() {
			_ = m.db.Close()
			_ = os.Remove(m.path)
		})
		rt.Repeat(m.actions())
	})
	t.Logf("model: %d runs, %d steps, 0 divergences, in %s", runs.Load(), steps.Load(), time.Since(start).Round(time.Millisecond))
}
