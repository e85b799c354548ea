package admin_test

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tokenstore/tokenstore"
	"github.com/tokenstore/tokenstore/admin"
	"github.com/tokenstore/tokenstore/internal/redistest"
	"github.com/tokenstore/tokenstore/redisstore"
)

// TestDamagedRecord_CostsOnlyItself: a damaged record (issue 12, kind 3)
// costs the admin API's list, expiring and stats only itself: they answer
// with every readable token and name the damaged one by ID beside them,
// and the Go client hands both on, as a *DB's List does. (On Redis, where
// damaging a record is one HSET; the file store's passes are tested in the
// root package.)
func TestDamagedRecord_CostsOnlyItself(t *testing.T) {
	addr := redistest.Addr(t)
	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{
		Addr: addr, DisableIdentity: true,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	})
	t.Cleanup(func() { require.NoError(t, rdb.Close()) })
	prefix := fmt.Sprintf("admindamage%d:", prefixes.Add(1))
	e := newEnv(t, func(t *testing.T, now func() time.Time) tokenstore.Store {
		s, err := redisstore.New(rdb, &redisstore.Options{KeyPrefix: prefix, Now: now, SweepInterval: -1})
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, s.Close()) })
		return s
	}, nil)
	var infos []tokenstore.Info
	var damagedToken string
	for i := range 3 {
		token, info := e.issueInfo("alice", tokenstore.WithPolicy(tokenstore.Absolute(time.Hour)))
		infos = append(infos, info)
		if i == 1 {
			damagedToken = token
		}
	}
	f, err := tokenstore.NewFormat("")
	require.NoError(t, err)
	h, err := f.Parse(damagedToken)
	require.NoError(t, err)
	require.NoError(t, rdb.HSet(ctx, prefix+"t:"+hex.EncodeToString(h[:]), "c", "not a number").Err())
	damaged := infos[1].ID.String()

	for _, path := range []string{"/admin/api/subjects/alice/tokens", "/admin/api/expiring?within=2h"} {
		res := e.do(req{method: "GET", path: path, token: e.admin})
		require.Equal(t, 200, res.status, "%s: %s", path, res.body)
		var l admin.TokenList
		require.NoError(t, json.Unmarshal([]byte(res.body), &l))
		var got []string
		for _, ti := range l.Tokens {
			got = append(got, ti.ID)
		}
		if path == "/admin/api/expiring?within=2h" {
			assert.Contains(t, got, infos[0].ID.String(), path)
			assert.Contains(t, got, infos[2].ID.String(), path)
		} else {
			assert.ElementsMatch(t, []string{infos[0].ID.String(), infos[2].ID.String()}, got, path)
		}
		assert.NotContains(t, got, damaged, path)
		assert.Contains(t, l.Damaged, damaged, "%s names the damaged record", path)
	}

	res := e.do(req{method: "GET", path: "/admin/api/stats", token: e.admin})
	require.Equal(t, 200, res.status, res.body)
	var st admin.StatsResponse
	require.NoError(t, json.Unmarshal([]byte(res.body), &st))
	assert.Contains(t, st.Tokens.Damaged, damaged)

	// The page lists the readable ones and says some are damaged.
	res = e.do(req{method: "GET", path: "/admin/?subject=alice", token: e.admin})
	require.Equal(t, 200, res.status)
	assert.Contains(t, res.body, infos[0].ID.String())
	assert.Contains(t, res.body, "damaged")

	c := &admin.Client{BaseURL: e.srv.URL + "/admin/", Token: e.admin}
	list, err := c.List(ctx, "alice")
	require.ErrorIs(t, err, tokenstore.ErrCorrupt)
	assert.Contains(t, err.Error(), damaged)
	assert.Len(t, list, 2, "every readable token comes with the error")
}
