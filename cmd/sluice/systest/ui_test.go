package systest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/sluicehq/sluice/api/admin"
	"github.com/sluicehq/sluice/cmd/sluice/systest"
	"github.com/sluicehq/sluice/lua/redistest"
)

// uiRules: "api" limits each user to 5 per second, "login" each IP to 2.
const uiRules = `{"rules": [
  {"name": "api", "key": ["user"], "limit": {"rate": 5, "per": "1s", "burst": 5}},
  {"name": "login", "match": {"route": "/login"}, "key": ["ip"], "limit": {"rate": 2, "per": "1s", "burst": 2}}]}`

// uiTraffic is what every node is asked in round i: mallory and the login
// attempts from 203.0.113.7 run into their limits, twenty other users
// taking turns stay well within theirs.
func uiTraffic(i int) []string {
	return []string{
		`{"attributes": {"user": "mallory"}}`,
		`{"attributes": {"user": "mallory"}}`,
		`{"attributes": {"route": "/login", "ip": "203.0.113.7"}}`,
		fmt.Sprintf(`{"attributes": {"user": "user-%d"}}`, i%20),
	}
}

// The status page, loaded in a real headless chromium from a node of a
// three-node cluster on Redis with denied traffic flowing, shows the real
// members, leader, modes, rules with their charts and counts, leases, and
// the cluster's top denied keys; its screenshot is
// a full-size, non-blank picture with the page's style applied.
// SLUICE_UI_SCREENSHOT=path keeps a copy of the screenshot.
func TestStatusPageInBrowser(t *testing.T) {
	begin := time.Now()
	redis := redistest.StartServer(t)
	opts := systest.Options{Rules: uiRules, Redis: redis.Addr(), RedisMode: "single", Args: healthyRedisArgs}
	c := systest.StartCluster(t, opts, opts, opts)
	before := c.Leader()
	n1 := c.Nodes[0]
	sendTraffic(t, c.Nodes)
	waitDenials(t, n1, "api", "login")
	t.Logf("cluster ready and denying after %v", time.Since(begin).Round(time.Millisecond))

	page, dom := browseStatusPage(t, n1)
	if text(dom.byID("leader")) == "none" {
		// An election on a loaded machine fell on the page's last poll;
		// that is the cluster's state, not the page's fault: look again.
		t.Log("the cluster had no leader at the page's last poll; loading it again")
		page, dom = browseStatusPage(t, n1)
	}
	// The page names the leader of before or of after its polls.
	leader, after := before, c.Leader()
	if text(dom.byID("leader")) == after.ID {
		leader = after
	}
	dom.wantText("leader", leader.ID)
	dom.wantText("node-id", n1.ID)
	dom.wantText("redis-mode", "single")
	dom.wantText("decision-mode", "global")
	// The banner names a route that failed to answer (a cluster warning,
	// such as no leader during an election, is no failure of the page).
	if banner := text(dom.byID("banner")); strings.Contains(banner, "/v1/") {
		t.Errorf("the page shows a failed call: %q", banner)
	}
	for _, p := range c.Nodes {
		row := dom.one(attrIs("data-member", p.ID))
		cells := text(row)
		if !strings.Contains(cells, "voter") || !strings.Contains(cells, "healthy") {
			t.Errorf("member %s reads %q, want a healthy voter", p.ID, cells)
		}
		if isLeader := strings.Contains(cells, "leader"); isLeader != (p == leader) {
			t.Errorf("member %s reads %q; leader is %s", p.ID, cells, leader.ID)
		}
		for _, rule := range []string{"api", "login"} {
			lease := dom.one(attrIs("data-lease-rule", rule))
			share := find(lease, attrIs("data-node", p.ID))
			if len(share) != 1 || !strings.Contains(text(share[0]), "%") {
				t.Errorf("lease of %s on %s: %q, want a percentage", rule, p.ID, text(lease))
			}
		}
	}
	for _, rule := range []string{"api", "login"} {
		row := dom.one(attrIs("data-rule", rule))
		for _, chart := range []string{"decisions", "denied"} {
			lines := find(row, func(n *html.Node) bool { return n.Data == "path" && attrValue(n, "class") == chart })
			if len(lines) != 1 || strings.Count(attrValue(lines[0], "d"), "L") < 1 {
				t.Errorf("rule %s has no %s chart with two or more points: %q", rule, chart, dom.source(row))
			}
		}
		if denied := count(t, dom.one(attrIs("class", "num total-denied"), row)); denied <= 0 {
			t.Errorf("rule %s shows %d denials; the traffic was denied", rule, denied)
		}
	}
	checkTopKeys(t, dom)
	checkScreenshot(t, page.Screenshot, 1280, 900)
}

// browseStatusPage loads p's status page in headless chromium.
func browseStatusPage(t *testing.T, p *systest.Proc) (systest.Page, domOf) {
	t.Helper()
	start := time.Now()
	page := systest.Browse(t, p.URL()+"/ui", 1280, 900, 6*time.Second)
	t.Logf("chromium took %v", time.Since(start).Round(time.Millisecond))
	doc, err := html.Parse(strings.NewReader(page.DOM))
	if err != nil {
		t.Fatalf("parse the DOM: %v", err)
	}
	return page, domOf{t, doc, page.DOM}
}

// checkTopKeys: the page lists mallory and 203.0.113.7 among the
// cluster's top denied keys, and each rule's cluster-wide count.
func checkTopKeys(t *testing.T, dom domOf) {
	t.Helper()
	note := text(dom.byID("top-note"))
	for rule, key := range map[string]string{"api": "mallory", "login": "203.0.113.7"} {
		rows := find(dom.doc, func(n *html.Node) bool {
			return attrValue(n, "data-top-rule") == rule && attrValue(n, "data-top-key") == key
		})
		if len(rows) != 1 {
			t.Errorf("top keys: want one row for %s/%s (note %q), got %d", rule, key, note, len(rows))
			continue
		}
		if denied := count(t, dom.one(attrIs("class", "num denied"), rows[0])); denied <= 0 {
			t.Errorf("top key %s/%s shows %d denials", rule, key, denied)
		}
		cluster := text(dom.one(attrIs("class", "num cluster-minute"), dom.one(attrIs("data-rule", rule))))
		if !strings.Contains(cluster, " of ") {
			t.Errorf("rule %s: the cluster's last minute reads %q, want \"D of N\"", rule, cluster)
		}
	}
}

// checkScreenshot: a PNG of the viewport's size, mostly not blank, with
// the page's dark header bar (the style sheet loaded).
func checkScreenshot(t *testing.T, data []byte, width, height int) {
	t.Helper()
	if path := os.Getenv("SLUICE_UI_SCREENSHOT"); path != "" {
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Error(err)
		}
	}
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("screenshot is not a PNG: %v", err)
	}
	if got := img.Bounds().Size(); got != (image.Point{width, height}) {
		t.Errorf("screenshot is %v, want %dx%d", got, width, height)
	}
	colours := map[[3]uint32]bool{}
	for y := 0; y < height; y += 3 {
		for x := 0; x < width; x += 3 {
			r, g, b, _ := img.At(x, y).RGBA()
			colours[[3]uint32{r >> 8, g >> 8, b >> 8}] = true
		}
	}
	if len(colours) < 20 {
		t.Errorf("screenshot has %d colours: blank or unstyled", len(colours))
	}
	if r, g, b, _ := img.At(5, 5).RGBA(); r>>8 > 60 || g>>8 > 60 || b>>8 > 60 {
		t.Errorf("screenshot's top-left pixel is (%d,%d,%d), want the dark header bar", r>>8, g>>8, b>>8)
	}
}

// sendTraffic asks every node for uiTraffic decisions until the test ends.
func sendTraffic(t *testing.T, nodes []*systest.Proc) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, len(nodes))
	t.Cleanup(func() {
		cancel()
		for range nodes {
			<-done
		}
	})
	for _, p := range nodes {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := 0; ctx.Err() == nil; i++ {
				for _, body := range uiTraffic(i) {
					_, _, _ = systest.Do(ctx, http.MethodPost, p.URL()+"/v1/check", body, "")
				}
				select {
				case <-ctx.Done():
				case <-time.After(50 * time.Millisecond):
				}
			}
		}()
	}
}

// waitDenials waits until p's GET /v1/node counts denials for every rule.
func waitDenials(t *testing.T, p *systest.Proc, rules ...string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var info admin.NodeInfo
		status, body, err := systest.Get(p.URL() + "/v1/node")
		if err == nil && status == http.StatusOK {
			err = json.Unmarshal([]byte(body), &info)
		}
		missing := 0
		for _, r := range rules {
			if info.Decisions[r]["denied"] == 0 {
				missing++
			}
		}
		if err == nil && missing == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no denials on %s for %v after 30 s: %d %s %v", p.ID, rules, status, body, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// domOf queries a parsed page.
type domOf struct {
	t   *testing.T
	doc *html.Node
	raw string
}

func (d domOf) byID(id string) *html.Node { return d.one(attrIs("id", id)) }

// one returns the single element under root (default the document) that
// matches, failing the test otherwise.
func (d domOf) one(match func(*html.Node) bool, root ...*html.Node) *html.Node {
	d.t.Helper()
	r := d.doc
	if len(root) > 0 {
		r = root[0]
	}
	found := find(r, match)
	if len(found) != 1 {
		d.t.Fatalf("want one matching element, found %d in:\n%s", len(found), d.raw)
	}
	return found[0]
}

func (d domOf) wantText(id, want string) {
	d.t.Helper()
	if got := strings.TrimSpace(text(d.byID(id))); got != want {
		d.t.Errorf("#%s reads %q, want %q", id, got, want)
	}
}

func (d domOf) source(n *html.Node) string {
	var b strings.Builder
	_ = html.Render(&b, n)
	return b.String()
}

func find(root *html.Node, match func(*html.Node) bool) []*html.Node {
	var found []*html.Node
	for n := range root.Descendants() {
		if n.Type == html.ElementNode && match(n) {
			found = append(found, n)
		}
	}
	return found
}

func attrIs(name, value string) func(*html.Node) bool {
	return func(n *html.Node) bool { return attrValue(n, name) == value }
}

func attr(n *html.Node, name string) *html.Attribute {
	for i := range n.Attr {
		if n.Attr[i].Key == name {
			return &n.Attr[i]
		}
	}
	return nil
}

func attrValue(n *html.Node, name string) string {
	if a := attr(n, name); a != nil {
		return a.Val
	}
	return ""
}

// text is n's text, its descendants' texts joined by spaces.
func text(n *html.Node) string {
	var parts []string
	for d := range n.Descendants() {
		if d.Type == html.TextNode && strings.TrimSpace(d.Data) != "" {
			parts = append(parts, strings.TrimSpace(d.Data))
		}
	}
	return strings.Join(parts, " ")
}

// count reads a number the page formatted with thousands separators (and
// perhaps an error bound after it: "1,234 ±3").
func count(t *testing.T, n *html.Node) int {
	t.Helper()
	first, _, _ := strings.Cut(text(n), " ")
	v, err := strconv.Atoi(strings.ReplaceAll(first, ",", ""))
	if err != nil {
		t.Fatalf("not a count: %q", text(n))
	}
	return v
}
