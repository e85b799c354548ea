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
// Get, List, Revoke, RevokeID, RevokeSubject, Rotate (with and without a
// grace, into the family or a new one), RevokeFamily, Sweep, clock moves
// (forward and back) and Close+Reopen, under absolute and sliding policies,
// a per-subject limit, and random TouchInterval and CacheSize; every answer
// must match the model's, and after every step Check must find nothing and
// the token count must match. Token families (issue 17) are modelled from
// the spec: a rotated-away token is a tombstone until its own deadline;
// within its grace (until the successor's first use) it answers with its
// own Info and rotates to the same successor; after, presenting it to
// Validate, Lookup or Rotate is ErrReused and revokes its family; the
// family's cap counts from its first token. A grace that only time
// ended reopens when the clock is set back into it, as a lifetime does;
// one that an event ended (the successor's first Validate, Lookup or
// Rotate, a reuse, RevokeFamily) stays ended whatever the clock does. The
// long run is rapid's own flags: -rapid.checks=20000 -rapid.steps=100.
//
// Replaying a fail file takes the -rapid.steps of the run that wrote it:
// the steps bound how rapid reads the file's draws (whether to take one
// more step), so a file written under -rapid.steps=100 replayed under the
// default 30 runs another, shorter sequence and passes. The clock starts
// at a fixed epoch; what is not drawn (IDs, token bytes, when the
// background writer runs) must not change an answer.

// modelTok is the model's token.
type modelTok struct {
	token, subject string
	id, family     uuid.UUID
	created, used  int64 // ms
	born           int64 // the family's first token's creation: the cap counts from it
	policy         tokenstore.Policy
	meta           map[string]string
	// answered: a Validate or Lookup answered it since the store was
	// opened. The store remembers that in memory only (docs/families.md):
	// with used > created it is the successor's first use, which ends its
	// predecessor's grace.
	answered bool
	// successor: made by Rotate. Its first use in its creation's
	// millisecond (or with the clock earlier) is counted 1 ms after its
	// creation, so that the file keeps it (cache.go).
	successor bool
}

// deadline is the model's own expiry arithmetic, independent of the
// library's Policy.Deadline: an absolute token's family ends TTL after
// its first token's creation, a sliding one's idle window restarts at
// each use, capped at that creation plus max.
func (m *modelTok) deadline() int64 {
	if !m.policy.IsSliding() {
		return m.born + m.policy.TTL().Milliseconds()
	}
	d := m.used + m.policy.TTL().Milliseconds()
	if capMs := m.policy.MaxLifetime().Milliseconds(); capMs > 0 {
		d = min(d, m.born+capMs)
	}
	return d
}

// modelTomb is what the model keeps of a rotated-away token.
type modelTomb struct {
	tok       modelTok // the token as it was at the rotation
	successor string
	graceEnd  int64 // 0: closed by a family revocation
	death     int64 // the token's own deadline at the rotation: then it is gone
}

type modelMachine struct {
	t      *rapid.T
	path   string
	opts   tokenstore.Options
	db     *tokenstore.DB
	clock  *tokenstoretest.Clock
	toks   map[string]*modelTok
	order  []string // issue order: List's order
	tombs  map[string]*modelTomb
	torder []string // rotation order, to draw from
	dead   []string // revoked or swept: must stay ErrNotFound
	steps  *atomic.Int64
	seen   *modelSeen
}

// modelSeen counts how often the runs reached the outcomes of families, so
// that the log shows the model did not pass by never meeting them.
type modelSeen struct {
	inGrace, reused, revokedByReuse, familyRevoked atomic.Int64
}

var (
	modelSubjects = []string{"ann", "bob", "cy", "dee"}
	modelDefault  = tokenstore.Sliding(10*time.Minute, time.Hour)
	modelLimit    = 6
	modelSteps    = []time.Duration{time.Millisecond, 500 * time.Millisecond, time.Second, 30 * time.Second, time.Minute, 10 * time.Minute, time.Hour, 24 * time.Hour}
	modelGraces   = []time.Duration{0, 0, time.Second, 30 * time.Second, tokenstore.MaxGrace}
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

// add notes a token Issue made: a family of its own.
func (m *modelMachine) add(token string, info tokenstore.Info, subject string, p tokenstore.Policy, meta map[string]string) {
	if p.IsZero() {
		p = modelDefault
	}
	mt := &modelTok{token: token, subject: subject, id: info.ID, family: info.ID, created: m.now(), used: m.now(), born: m.now(), policy: p, meta: meta}
	m.toks[token] = mt
	m.order = append(m.order, token)
	m.expectInfo("issued", info, mt)
}

// rotated notes a Rotate of old (live) into token: old becomes a tombstone.
func (m *modelMachine) rotated(old, token string, info tokenstore.Info, grace time.Duration, newFamily bool) {
	prev := m.toks[old]
	mt := &modelTok{token: token, subject: prev.subject, id: info.ID, family: prev.family, created: m.now(), used: m.now(),
		born: prev.born, policy: prev.policy, meta: prev.meta, successor: true}
	if newFamily {
		mt.family, mt.born = info.ID, m.now()
	}
	m.tombs[old] = &modelTomb{tok: *prev, successor: token, graceEnd: m.now() + grace.Milliseconds(), death: prev.deadline()}
	m.torder = append(m.torder, old)
	delete(m.toks, old)
	m.order = slices.DeleteFunc(m.order, func(s string) bool { return s == old })
	m.toks[token] = mt
	m.order = append(m.order, token)
	m.expectInfo("rotated", info, mt)
}

// revokeFamily is RevokeFamily in the model: every token of the family
// goes (expired ones not swept yet too), every grace of it closes for
// good, also one that time had ended: a clock set back after must not
// reopen what the revocation (or the reuse that asked for it) ended.
func (m *modelMachine) revokeFamily(family uuid.UUID) int {
	n := 0
	for _, tok := range slices.Clone(m.order) {
		if m.toks[tok].family == family {
			m.remove(tok)
			n++
		}
	}
	for _, tb := range m.tombs {
		if tb.tok.family == family {
			tb.graceEnd = 0
		}
	}
	return n
}

// graceOpen is the model's answer for a tombstone within its death: nil
// while the old token still works; errClosed once its grace has ended (by
// time, by the successor's first use or rotation, by a family
// revocation); ErrNotFound or ErrExpired when the successor was revoked or
// has expired within the grace.
func (m *modelMachine) graceOpen(tb *modelTomb) error {
	if m.now() >= tb.graceEnd {
		return errClosed
	}
	succ := m.toks[tb.successor]
	switch {
	case succ == nil && m.tombs[tb.successor] != nil:
		return errClosed // rotated: used
	case succ == nil:
		return tokenstore.ErrNotFound
	case succ.used > succ.created || succ.answered:
		return errClosed
	case m.now() >= succ.deadline():
		return tokenstore.ErrExpired
	}
	return nil
}

var errClosed = errors.New("model: grace closed")

// presented answers a rotated-away token presented to Validate, Lookup or
// Rotate: in its grace, nil; after it, the family is revoked and the
// answer is ErrReused; after its death, ErrNotFound.
func (m *modelMachine) presented(tb *modelTomb) error {
	if m.now() >= tb.death {
		return tokenstore.ErrNotFound
	}
	err := m.graceOpen(tb)
	switch err {
	case errClosed:
		m.seen.reused.Add(1)
		m.seen.revokedByReuse.Add(int64(m.revokeFamily(tb.tok.family)))
		return tokenstore.ErrReused
	case nil:
		m.seen.inGrace.Add(1)
	}
	return err
}

func (m *modelMachine) remove(token string) {
	delete(m.toks, token)
	m.order = slices.DeleteFunc(m.order, func(s string) bool { return s == token })
	m.dead = append(m.dead, token)
}

func (m *modelMachine) expectInfo(op string, got tokenstore.Info, want *modelTok) {
	m.t.Helper()
	m.expectInfoExpiring(op, got, want, want.deadline())
}

// expectInfoExpiring is expectInfo with the expiry given.
func (m *modelMachine) expectInfoExpiring(op string, got tokenstore.Info, want *modelTok, expires int64) {
	m.t.Helper()
	switch {
	case got.ID != want.id:
		m.t.Fatalf("%s: ID %s, model %s", op, got.ID, want.id)
	case got.FamilyID != want.family:
		m.t.Fatalf("%s: family %s, model %s", op, got.FamilyID, want.family)
	case got.Subject != want.subject:
		m.t.Fatalf("%s: subject %q, model %q", op, got.Subject, want.subject)
	case got.CreatedAt.UnixMilli() != want.created:
		m.t.Fatalf("%s: created %d, model %d", op, got.CreatedAt.UnixMilli(), want.created)
	case got.LastUsedAt.UnixMilli() != want.used:
		m.t.Fatalf("%s: last used %d, model %d", op, got.LastUsedAt.UnixMilli(), want.used)
	case got.ExpiresAt.UnixMilli() != expires:
		m.t.Fatalf("%s: expires %d, model %d", op, got.ExpiresAt.UnixMilli(), expires)
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

// pick draws a token: usually one the model holds, often one rotated
// away, sometimes a dead one, a never-issued one or a malformed one.
func (m *modelMachine) pick(t *rapid.T) (string, *modelTok) {
	kind := rapid.IntRange(0, 11).Draw(t, "pick")
	switch {
	case kind < 6 && len(m.order) > 0:
		tok := rapid.SampledFrom(m.order).Draw(t, "token")
		return tok, m.toks[tok]
	case kind < 9 && len(m.torder) > 0:
		return rapid.SampledFrom(m.torder).Draw(t, "rotated away"), nil
	case kind < 11 && len(m.dead) > 0:
		return rapid.SampledFrom(m.dead).Draw(t, "dead"), nil
	case kind == 11 && len(m.order) > 0:
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
			tok, mt := m.pick(t)
			id := uuid.Must(uuid.NewV7())
			if mt != nil {
				id = mt.id
			} else if tb := m.tombs[tok]; tb != nil {
				id = tb.tok.id // rotated away: no longer a token
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
			if tb := m.tombs[tok]; mt == nil && tb != nil && m.now() < tb.death && m.graceOpen(tb) == nil {
				// In its grace the old token validates, so Revoke
				// revokes it: its successor and its tombstone go.
				m.expectErr("revoke in grace", err, nil)
				m.remove(tb.successor)
				delete(m.tombs, tok)
				m.torder = slices.DeleteFunc(m.torder, func(s string) bool { return s == tok })
				m.dead = append(m.dead, tok)
				return
			}
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
			m.rotate(t, tok, mt, modelGraces)
		},
		// Refresh is a client's refresh whose answer was lost: a Rotate
		// with a grace, then the same old token presented again.
		"Refresh": func(t *rapid.T) {
			if len(m.order) == 0 {
				t.Skip("no token")
			}
			tok := rapid.SampledFrom(m.order).Draw(t, "token")
			m.rotate(t, tok, m.toks[tok], modelGraces[2:])
			m.replay(t, tok)
		},
		// Replay presents a rotated-away token again, as a client that
		// lost an answer does, or a thief.
		"Replay": func(t *rapid.T) {
			if len(m.torder) == 0 {
				t.Skip("nothing rotated away")
			}
			m.replay(t, rapid.SampledFrom(m.torder).Draw(t, "rotated away"))
		},
		"RevokeFamily": func(t *rapid.T) {
			var families []uuid.UUID // in a replayable order
			for _, tok := range m.order {
				families = append(families, m.toks[tok].family)
			}
			for _, tok := range m.torder {
				if tb := m.tombs[tok]; tb != nil {
					families = append(families, tb.tok.family)
				}
			}
			family := uuid.Must(uuid.NewV7())
			if len(families) > 0 && rapid.IntRange(0, 5).Draw(t, "known family") > 0 {
				family = rapid.SampledFrom(families).Draw(t, "family")
			}
			n, err := m.db.RevokeFamily(ctx, family)
			m.expectErr("revoke family", err, nil)
			if want := m.revokeFamily(family); n != want {
				t.Fatalf("revoke family %s: %d, model %d", family, n, want)
			}
			m.seen.familyRevoked.Add(int64(n))
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
			// Tombstones due go too, counted nowhere.
			for _, tok := range slices.Clone(m.torder) {
				if m.now() >= m.tombs[tok].death {
					delete(m.tombs, tok)
					m.torder = slices.DeleteFunc(m.torder, func(s string) bool { return s == tok })
					m.dead = append(m.dead, tok)
				}
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
			for _, mt := range m.toks {
				mt.answered = false // kept in memory only
			}
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

// rotate is Rotate of tok (mt: the model's token, nil when it holds none
// by that name), with one of graces and maybe into a new family.
func (m *modelMachine) rotate(t *rapid.T, tok string, mt *modelTok, graces []time.Duration) {
	ctx := context.Background()
	grace := rapid.SampledFrom(graces).Draw(t, "grace")
	newFamily := rapid.IntRange(0, 4).Draw(t, "new family") == 0
	opts := []tokenstore.RotateOption{tokenstore.WithGrace(grace)}
	if newFamily {
		opts = append(opts, tokenstore.WithNewFamily())
	}
	newTok, info, err := m.db.Rotate(ctx, tok, opts...)
	if tb := m.tombs[tok]; tb != nil {
		want := m.presented(tb)
		m.expectErr("rotate of a rotated-away token", err, want)
		if want == nil {
			if newTok != tb.successor {
				t.Fatalf("rotate in the grace: a second successor")
			}
			m.expectInfo("rotate in the grace", info, m.toks[tb.successor])
		}
		return
	}
	switch {
	case mt == nil:
		if !errors.Is(err, tokenstore.ErrNotFound) && !errors.Is(err, tokenstore.ErrMalformed) {
			t.Fatalf("rotate of a token the model does not hold: %v", err)
		}
	case m.now() >= mt.deadline():
		m.expectErr("rotate", err, tokenstore.ErrExpired)
	default:
		m.expectErr("rotate", err, nil)
		m.rotated(tok, newTok, info, grace, newFamily)
	}
}

// replay presents tok again to Validate, Lookup or Rotate.
func (m *modelMachine) replay(t *rapid.T, tok string) {
	mt := m.toks[tok] // nil unless the rotation was refused (expired)
	switch rapid.IntRange(0, 2).Draw(t, "replay by") {
	case 0:
		m.checkToken(t, tok, mt, true)
	case 1:
		m.checkToken(t, tok, mt, false)
	default:
		m.rotate(t, tok, mt, modelGraces)
	}
}

// check is Validate (use) or Lookup.
func (m *modelMachine) check(t *rapid.T, use bool) {
	tok, mt := m.pick(t)
	m.checkToken(t, tok, mt, use)
}

// checkToken is Validate (use) or Lookup of tok (mt: as for rotate).
func (m *modelMachine) checkToken(t *rapid.T, tok string, mt *modelTok, use bool) {
	op, call := "lookup", m.db.Lookup
	if use {
		op, call = "validate", m.db.Validate
	}
	info, err := call(context.Background(), tok)
	if tb := m.tombs[tok]; tb != nil {
		want := m.presented(tb)
		m.expectErr(op+" of a rotated-away token", err, want)
		if want == nil {
			// In the grace: the old token's own Info, expiring at the
			// grace's end at the latest; no use counted.
			old := tb.tok
			m.expectInfoExpiring(op+" in the grace", info, &old, min(tb.death, tb.graceEnd))
		}
		return
	}
	switch {
	case mt == nil:
		if !errors.Is(err, tokenstore.ErrNotFound) && !errors.Is(err, tokenstore.ErrMalformed) {
			t.Fatalf("%s of a token the model does not hold: %v", op, err)
		}
	case m.now() >= mt.deadline():
		m.expectErr(op, err, tokenstore.ErrExpired)
	default:
		m.expectErr(op, err, nil)
		if used := m.now(); use {
			if mt.successor && mt.used == mt.created && used <= mt.created {
				used = mt.created + 1
			}
			mt.used = max(mt.used, used)
		}
		mt.answered = true
		m.expectInfo(op, info, mt)
	}
}

func TestModel_StateMachine(t *testing.T) {
	dir := t.TempDir()
	var runs, steps atomic.Int64
	var seen modelSeen
	start := time.Now()
	rapid.Check(t, func(rt *rapid.T) {
		clock := tokenstoretest.NewClockAt(epoch)
		m := &modelMachine{
			t:     rt,
			path:  filepath.Join(dir, fmt.Sprintf("model-%d.db", runs.Add(1))),
			clock: clock,
			toks:  map[string]*modelTok{},
			tombs: map[string]*modelTomb{},
			steps: &steps,
			seen:  &seen,
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
	t.Logf("model: %d runs, %d steps, 0 divergences, in %s; rotated-away tokens answered in their grace %d times, reused %d times (revoking %d tokens), RevokeFamily revoked %d",
		runs.Load(), steps.Load(), time.Since(start).Round(time.Millisecond), seen.inGrace.Load(), seen.reused.Load(), seen.revokedByReuse.Load(), seen.familyRevoked.Load())
}
