package redisstore_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tokenstore/tokenstore"
	"github.com/tokenstore/tokenstore/internal/redistest"
	"github.com/tokenstore/tokenstore/redisstore"
	"github.com/tokenstore/tokenstore/tokenstoretest"
)

// ownCluster starts a Redis Cluster of three primaries on loopback ports,
// the slots split evenly, and returns their addresses once every node
// reports the cluster ok.
func ownCluster(t *testing.T) []string {
	t.Helper()
	ctx := context.Background()
	var addrs []string
	var raws []*redis.Client
	for range 3 {
		srv := ownRedis(t, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "5000")
		addrs = append(addrs, srv.Addr)
		raws = append(raws, rawClient(t, srv.Addr))
	}
	ranges := [][2]int{{0, 5460}, {5461, 10922}, {10923, 16383}}
	for i, r := range raws {
		require.NoError(t, r.Do(ctx, "CLUSTER", "ADDSLOTSRANGE", ranges[i][0], ranges[i][1]).Err())
	}
	for _, a := range addrs[1:] {
		host, port, _ := net.SplitHostPort(a)
		require.NoError(t, raws[0].ClusterMeet(ctx, host, port).Err())
	}
	require.Eventually(t, func() bool {
		for _, r := range raws {
			info, err := r.ClusterInfo(ctx).Result()
			if err != nil || !strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, "cluster_known_nodes:3") {
				return false
			}
		}
		return true
	}, 20*time.Second, 20*time.Millisecond, "the cluster did not form")
	return addrs
}

func clusterClient(t testing.TB, addrs []string) *redis.ClusterClient {
	t.Helper()
	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs, DisableIdentity: true})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// TestCluster runs the conformance suite on a real three-node Redis
// Cluster, each test's store under its own hash tag, and checks that a
// store's keys share one slot (the scripts need them together) while
// stores spread over the nodes.
func TestCluster(t *testing.T) {
	addrs := ownCluster(t)
	ctx := context.Background()

	t.Run("Conformance", func(t *testing.T) {
		tokenstoretest.Run(t, func(t *testing.T, c tokenstoretest.Config) tokenstore.Store {
			s, err := redisstore.New(clusterClient(t, addrs), &redisstore.Options{
				KeyPrefix:           "{" + uniquePrefix() + "}:",
				Now:                 c.Now,
				Policy:              c.Policy,
				Prefix:              c.Prefix,
				MaxTokensPerSubject: c.MaxTokensPerSubject,
				TouchInterval:       c.TouchInterval,
				SweepInterval:       c.SweepInterval,
				Logger:              c.Logger,
			})
			require.NoError(t, err)
			t.Cleanup(func() { require.NoError(t, s.Close()) })
			return s
		})
	})

	t.Run("OneSlotPerStore", func(t *testing.T) {
		cc := clusterClient(t, addrs)
		nodes := map[string]bool{}
		for range 12 {
			prefix := "{" + uniquePrefix() + "}:"
			s, err := redisstore.New(cc, &redisstore.Options{KeyPrefix: prefix, SweepInterval: -1})
			require.NoError(t, err)
			token, info, err := s.Issue(ctx, "user")
			require.NoError(t, err)
			_, err = s.Validate(ctx, token)
			require.NoError(t, err)
			keys := []string{recordKey(prefix, token), prefix + "i:" + info.ID.String(), prefix + "s:user", prefix + "e"}
			slot, err := cc.ClusterKeySlot(ctx, keys[0]).Result()
			require.NoError(t, err)
			for _, k := range keys {
				n, err := cc.Exists(ctx, k).Result()
				require.NoError(t, err)
				assert.Equal(t, int64(1), n, k)
				ks, err := cc.ClusterKeySlot(ctx, k).Result()
				require.NoError(t, err)
				assert.Equal(t, slot, ks, "%s is in the store's slot", k)
			}
			node, err := cc.MasterForKey(ctx, keys[0])
			require.NoError(t, err)
			nodes[node.Options().Addr] = true
			require.NoError(t, s.Close())
		}
		assert.Greater(t, len(nodes), 1, "stores under different hash tags spread over the nodes")
	})

	t.Run("ReplicaReads", func(t *testing.T) {
		c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs, ReadOnly: true, DisableIdentity: true})
		t.Cleanup(func() { _ = c.Close() })
		_, err := redisstore.New(c, &redisstore.Options{KeyPrefix: "{tokens}:"})
		require.ErrorContains(t, err, "ReadOnly", "a client reading from replicas is refused, naming the setting")
		s, err := redisstore.New(c, &redisstore.Options{KeyPrefix: "{tokens}:", ReplicaReads: true, SweepInterval: -1})
		require.NoError(t, err, "unless the user accepts it")
		require.NoError(t, s.Close())
	})

	t.Run("NoHashTag", func(t *testing.T) {
		_, err := redisstore.New(clusterClient(t, addrs), &redisstore.Options{KeyPrefix: "tokens:"})
		require.ErrorContains(t, err, "hash tag")
	})
}

// TestSentinel runs a store through a Sentinel pair watching a primary
// and its replica: the primary is killed, and tokens issued before the
// failover validate after it, on the promoted replica, which takes the
// store's writes.
func TestSentinel(t *testing.T) {
	ctx := context.Background()
	primary := ownRedis(t, "--repl-diskless-sync-delay", "0")
	replica := ownRedis(t, "--replicaof", hostPort(primary.Addr), "--repl-diskless-sync-delay", "0")
	host, port, _ := net.SplitHostPort(primary.Addr)
	conf := fmt.Sprintf("sentinel monitor tokens %s %s 1\nsentinel down-after-milliseconds tokens 500\nsentinel failover-timeout tokens 20000\n", host, port)
	sentinels := []*redistest.Server{ownSentinel(t, conf), ownSentinel(t, conf)}

	client := redis.NewUniversalClient(&redis.UniversalOptions{
		MasterName: "tokens", Addrs: []string{sentinels[0].Addr, sentinels[1].Addr}, DisableIdentity: true,
	})
	t.Cleanup(func() { _ = client.Close() })
	prefix := uniquePrefix()
	s, err := redisstore.New(client, &redisstore.Options{KeyPrefix: prefix, SweepInterval: -1})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })

	token, info, err := s.Issue(ctx, "user")
	require.NoError(t, err)
	got, err := s.Validate(ctx, token)
	require.NoError(t, err)
	assert.Equal(t, info.ID, got.ID)
	waitReplicated(t, primary.Addr, replica.Addr)

	// The primary dies (kill -9); the Sentinels promote the replica, once
	// they know it.
	sent := rawClient(t, sentinels[0].Addr)
	require.Eventually(t, func() bool {
		replicas, err := sent.Do(ctx, "SENTINEL", "REPLICAS", "tokens").Slice()
		return err == nil && len(replicas) == 1
	}, 20*time.Second, 20*time.Millisecond, "the Sentinels never found the replica")
	primary.Stop()
	require.Eventually(t, func() bool {
		addr, err := sent.Do(ctx, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", "tokens").StringSlice()
		return err == nil && len(addr) == 2 && net.JoinHostPort(addr[0], addr[1]) == replica.Addr
	}, 20*time.Second, 20*time.Millisecond, "the replica was not promoted")

	// The client follows the Sentinels to the new primary.
	require.Eventually(t, func() bool {
		_, err := s.Validate(ctx, token)
		return err == nil
	}, 20*time.Second, 20*time.Millisecond, "a token issued before the failover validates after it")
	var second string
	require.Eventually(t, func() bool {
		second, _, err = s.Issue(ctx, "user")
		return err == nil
	}, 20*time.Second, 20*time.Millisecond, "Issue works on the new primary")
	_, err = s.Validate(ctx, second)
	require.NoError(t, err)
	n, err := rawClient(t, replica.Addr).Exists(ctx, recordKey(prefix, second)).Result()
	require.NoError(t, err)
	assert.Equal(t, int64(1), n, "written to the promoted replica")
	require.NoError(t, s.Revoke(ctx, token))
	_, err = s.Validate(ctx, token)
	require.ErrorIs(t, err, tokenstore.ErrNotFound)
}

// TestRing: New refuses a go-redis Ring. While its heartbeat finds a
// shard down, a Ring sends that shard's keys to another: tried with the
// store's shard killed (kill -9) and restarted from its AOF, a
// RevokeSubject made meanwhile returned 0 and no error, and the victim's
// token validated again once the shard was back.
func TestRing(t *testing.T) {
	a, b := ownRedis(t), ownRedis(t)
	ring := redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"a": a.Addr, "b": b.Addr}, DisableIdentity: true})
	t.Cleanup(func() { _ = ring.Close() })
	for _, prefix := range []string{"{tokens}:", "tokens:"} {
		_, err := redisstore.New(ring, &redisstore.Options{KeyPrefix: prefix})
		require.ErrorContains(t, err, "Ring is not supported", prefix)
		require.ErrorContains(t, err, "revocation made then is lost", "the error says why")
	}
}
