package main

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/gatehouse-iot/gatehouse/api/apitypes"
)

// chartBucket is what a chart's bar says about itself.
type chartBucket struct {
	Start        string `json:"start"`
	Allow        int    `json:"allow"`
	Deny         int    `json:"deny"`
	Error        int    `json:"error"`
	Enrolled     int    `json:"enrolled"`
	Renewed      int    `json:"renewed"`
	EnrollFailed int    `json:"enrollFailed"`
	Title        string `json:"title"`
	// Height is the bar's drawn height in CSS pixels; Fill the computed
	// fill of its lowest segment.
	Height float64 `json:"height"`
	Fill   string  `json:"fill"`
}

// bars reads every bar of the chart sel, oldest first.
func (u *uiSession) bars(sel string) []chartBucket {
	u.t.Helper()
	out, err := chromedp.Run(u.ctx, chromedp.Evaluate[[]chartBucket](`[...document.querySelectorAll(`+jsString(sel+" g.bucket")+`)].map(g => {
		const n = (k) => Number(g.dataset[k] ?? -1);
		const r = g.querySelector('rect');
		return {start: g.dataset.start, allow: n('allow'), deny: n('deny'), error: n('error'), enrolled: n('enrolled'),
			renewed: n('renewed'), enrollFailed: n('enrollFailed'), title: g.querySelector('title')?.textContent || '',
			height: g.getBoundingClientRect().height, fill: r ? getComputedStyle(r).fill : ''};
	})`))
	if err != nil {
		u.t.Fatalf("read %s: %v", sel, err)
	}
	return out
}

// inViewport scrolls sel into view and reports whether all of it is then
// inside the window, with an area, and visible by its computed style.
func (u *uiSession) inViewport(sel string) bool {
	u.t.Helper()
	v, err := chromedp.Run(u.ctx, chromedp.Evaluate[bool](`(() => {
		const e = document.querySelector(`+jsString(sel)+`);
		if (!e) return false;
		e.scrollIntoView({block: 'center'});
		const r = e.getBoundingClientRect(), cs = getComputedStyle(e);
		return cs.display !== 'none' && cs.visibility !== 'hidden' && cs.opacity !== '0' && r.width > 100 && r.height > 50 &&
			r.top >= 0 && r.left >= 0 && r.bottom <= window.innerHeight && r.right <= window.innerWidth;
	})()`))
	if err != nil {
		u.t.Fatalf("in viewport %s: %v", sel, err)
	}
	return v
}

// TestDashboardCharts: real traffic through the real binary's native hook
// and enrollment API shows on the dashboard's charts, one bar per step, the
// current step's bar holding exactly what was sent.
func TestDashboardCharts(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and drives a browser")
	}
	chromiumPath(t)
	g := newGatehouse(t)
	g.serve(t, "GATEHOUSE_HOOKS_SECRET="+e2eHookSecret)
	const allows, denies, enrolls = 5, 3, 3
	tokens := g.tokens(t, "default", enrolls)

	// Everything is sent and read within one minute, so the current
	// minute's bar holds all of it: start early in a minute.
	if s := time.Now().Second(); s > 15 {
		time.Sleep(time.Duration(61-s) * time.Second)
	}
	sent := time.Now().UTC()
	for i, tok := range tokens {
		g.enroll(t, tok, fmt.Sprintf("chart-%d", i))
	}
	// A token used twice: a failed enrollment (token_used).
	if r := g.run(t, nil, "enroll", "--server", g.server, "--token", tokens[0], "--out", t.TempDir(), "--device-id", "chart-0", "--json"); r.code == 0 {
		t.Fatal("enrolling with a used token succeeded")
	}
	for i := range allows {
		id := fmt.Sprintf("chart-%d", i%enrolls)
		if !g.hookAllows(t, map[string]any{"action": "connect", "client_id": id, "identity": id}) {
			t.Fatalf("%s: CONNECT denied", id)
		}
	}
	for i := range denies {
		if g.hookAllows(t, map[string]any{"action": "publish", "client_id": "chart-1", "identity": "chart-1",
			"topic": fmt.Sprintf("fleets/default/devices/chart-2/telemetry/%d", i)}) {
			t.Fatal("a publish to another device's topic was allowed")
		}
	}

	// An operator's what-if is a decision of the core, not broker traffic:
	// the charts leave it out.
	if code, body := g.call(t, http.MethodPost, "/api/v1/decisions/simulate", map[string]string{"device": "chart-0", "action": "connect"}); code != http.StatusOK {
		t.Fatalf("simulate: %d %s", code, body)
	}

	// The API refuses a window it does not know, with a stable code.
	code, body := g.call(t, http.MethodGet, "/api/v1/stats/series?window=week", nil)
	if code != http.StatusBadRequest || !strings.Contains(string(body), `"code":"invalid_argument"`) {
		t.Errorf("window=week: %d %s, want 400 invalid_argument", code, body)
	}

	u, pageErrors := openBrowser(t, g.server)
	u.login(g.adminUser, g.adminPassword)
	u.visit("#/", "#decisions-chart g.bucket")
	minute := sent.Truncate(time.Minute).Format(time.RFC3339)

	t.Run("hour", func(t *testing.T) {
		u.t = t
		dec, enr := u.bars("#decisions-chart"), u.bars("#enrollments-chart")
		if len(dec) != 60 || len(enr) != 60 {
			t.Fatalf("hour view: %d decision bars, %d enrollment bars; want 60 each", len(dec), len(enr))
		}
		last := dec[59]
		if last.Start != minute {
			t.Fatalf("the last bar is %s, the traffic was sent in %s: the minute turned (machine too slow)", last.Start, minute)
		}
		if last.Allow != allows || last.Deny != denies || last.Error != 0 {
			t.Errorf("last minute's bar: allow %d deny %d error %d; want %d, %d, 0", last.Allow, last.Deny, last.Error, allows, denies)
		}
		wantTitle := fmt.Sprintf("%s UTC: allow %d, deny %d, error 0", sent.Format("15:04"), allows, denies)
		if last.Title != wantTitle {
			t.Errorf("last bar's title %q, want %q", last.Title, wantTitle)
		}
		if last.Height < 20 || last.Fill != "rgb(0, 114, 178)" {
			t.Errorf("last bar drawn %.1f px high, filled %q; want a tall bar, allows in blue", last.Height, last.Fill)
		}
		for _, b := range dec[:59] {
			if b.Allow+b.Deny+b.Error != 0 || b.Height != 0 {
				t.Errorf("bar %s is not empty: %+v", b.Start, b)
			}
		}
		if e := enr[59]; e.Enrolled != enrolls || e.EnrollFailed != 1 || e.Renewed != 0 {
			t.Errorf("last minute's enrollments: %+v, want %d enrolled and 1 failed", e, enrolls)
		}
		if n := u.count("#deny-reasons-chart g.reason-bar"); n != 1 {
			t.Errorf("%d deny reason bars, want 1 (every deny had the same reason)", n)
		}
		if c := u.text(`#deny-reasons-chart g.reason-bar title`); !strings.HasSuffix(c, ": "+strconv.Itoa(denies)) {
			t.Errorf("deny reason bar says %q, want a count of %d", c, denies)
		}
		u.wantVisible(true, "#decisions-chart", "#enrollments-chart", "#deny-reasons-chart", "#decisions-chart-legend")
		for _, sel := range []string{"#decisions-chart", "#enrollments-chart"} {
			if !u.inViewport(sel) {
				t.Errorf("%s is not drawn inside the window", sel)
			}
		}
		u.inViewport("#traffic")
		u.shot("20-dashboard-charts")
	})

	t.Run("day", func(t *testing.T) {
		u.t = t
		u.rerendered("day window", chromedp.Click(chromedp.CSS(`[data-testid="window-day"]`)))
		dec, enr := u.bars("#decisions-chart"), u.bars("#enrollments-chart")
		if len(dec) != 24 || len(enr) != 24 {
			t.Fatalf("day view: %d decision bars, %d enrollment bars; want 24 each", len(dec), len(enr))
		}
		if last := dec[23]; last.Start != sent.Truncate(time.Hour).Format(time.RFC3339) || last.Allow != allows || last.Deny != denies {
			t.Errorf("this hour's bar %+v, want %d allows and %d denies from %s", last, allows, denies, sent.Truncate(time.Hour))
		}
		if e := enr[23]; e.Enrolled != enrolls || e.EnrollFailed != 1 {
			t.Errorf("this hour's enrollments %+v", e)
		}
		u.inViewport("#traffic")
		u.shot("21-dashboard-charts-day")
	})

	// The series API agrees with what the page drew.
	var ts apitypes.TrafficSeries
	g.api(t, http.MethodGet, "/api/v1/stats/series?window=hour", nil, http.StatusOK, &ts)
	var a, d uint64
	for _, b := range ts.Buckets {
		a, d = a+b.Allow, d+b.Deny
	}
	if a != allows || d != denies {
		t.Errorf("the hour's series counts %d allows and %d denies, want %d and %d", a, d, allows, denies)
	}
	if errs := pageErrors(); len(errs) > 0 {
		t.Errorf("errors in the page: %v", errs)
	}
}
