package admin_test

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tokenstore/tokenstore"
	"github.com/tokenstore/tokenstore/admin"
)

func TestScratch_CloseInFlight(t *testing.T) {
	eachBackend(t, func(t *testing.T, open func(*testing.T, func() time.Time) tokenstore.Store) {
		e := newEnv(t, open, nil)
		for i := range 200 {
			e.issue(fmt.Sprintf("u%d", i%5))
		}
		var wg sync.WaitGroup
		statuses := make(chan string, 100000)
		stop := make(chan struct{})
		for g := range 8 {
			wg.Go(func() {
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					var r *http.Request
					switch (g + i) % 5 {
					case 0:
						r, _ = http.NewRequest("GET", e.srv.URL+"/admin/api/subjects/u1/tokens", nil)
					case 1:
						r, _ = http.NewRequest("GET", e.srv.URL+"/admin/api/stats", nil)
					case 2:
						r, _ = http.NewRequest("GET", e.srv.URL+"/admin/api/expiring?within=1000h", nil)
					case 3:
						r, _ = http.NewRequest("DELETE", e.srv.URL+fmt.Sprintf("/admin/api/subjects/u%d/tokens", i%5), nil)
					case 4:
						r, _ = http.NewRequest("GET", e.srv.URL+"/admin/?subject=u2", nil)
					}
					r.Header.Set("Authorization", "Bearer "+e.admin)
					res, err := http.DefaultClient.Do(r)
					if err != nil {
						statuses <- "err " + err.Error()
						continue
					}
					res.Body.Close()
					statuses <- fmt.Sprint(r.Method, " ", r.URL.Path, " ", res.StatusCode)
				}
			})
		}
		time.Sleep(300 * time.Millisecond)
		require.NoError(t, e.calls.Store.Close())
		time.Sleep(200 * time.Millisecond)
		close(stop)
		wg.Wait()
		close(statuses)
		counts := map[string]int{}
		for s := range statuses {
			counts[s]++
		}
		t.Log(counts)
		for s := range counts {
			assert.NotContains(t, s, " 500")
		}
		_ = context.Background
		_ = admin.DefaultScope
	})
}
