package admin_test

import (
	"net/http"
	"testing"

	"github.com/tokenstore/tokenstore"
)

func TestZZProbe(t *testing.T) {
	e := newEnv(t, backends[0].open, nil)
	first, fi := e.issueInfo("<b>x</b>\u202egnp.exe", tokenstore.WithMetadata(map[string]string{"<i>k</i>": "\u2067v<script>"}))
	next, ni := e.rotate(first)
	fam := fi.ID.String()
	s := e.session()
	s.login(e.admin)
	for _, m := range []string{"HEAD", "OPTIONS", "PUT", "DELETE"} {
		r, _ := http.NewRequest(m, e.srv.URL+"/admin/family/revoke?id="+ni.ID.String()+"&family="+fam+"&subject=x", nil)
		res := e.send(s.c, r)
		t.Logf("%s page -> %d %q", m, res.status, res.header.Get("Allow"))
	}
	res := s.get("/admin/family/revoke?id=" + ni.ID.String())
	t.Log(res.body)
	res = s.get("/admin/?subject=" + "%3Cb%3Ex%3C%2Fb%3E%E2%80%AEgnp.exe")
	t.Log(res.body)
	for _, m := range []string{"HEAD", "OPTIONS", "POST", "PUT", "PATCH", "GET", "DELETE"} {
		res := e.do(req{method: m, path: "/admin/api/families/" + fam + "/tokens", token: e.admin})
		t.Logf("%s api -> %d allow=%q %s", m, res.status, res.header.Get("Allow"), res.body)
	}
	t.Log(e.hello(next))
	for _, p := range []string{"/admin/api/families/" + fam, "/admin/api/families/" + fam + "/tokens/", "/admin/api/families/%20" + fam + "/tokens", "/admin/api/families/" + fam + "%2Ftokens"} {
		res := e.do(req{method: "DELETE", path: p, token: e.admin})
		t.Logf("DELETE %s -> %d %s", p, res.status, res.body)
	}
	t.Log(e.hello(next))
}
