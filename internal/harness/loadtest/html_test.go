package loadtest

import (
	"bytes"
	"encoding/xml"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// sampleReport is a report with three regions, a timeline and two events.
func sampleReport() *Report {
	rep := &Report{Schema: SchemaVersion, Scenario: "leader-kill", StartedAt: time.Unix(1700000000, 0).UTC(), DurationS: 6, TargetRPS: 300, OK: true,
		Events: []Event{{AtS: 2, Action: "kill-leader", Detail: "n1"}, {AtS: 4, Action: "restart-coordinators", Detail: "n1"}}}
	for _, region := range []string{"ap-south", "eu-west", "us-east"} {
		rr := RegionReport{Region: region, Edge: "http://127.0.0.1:1", TargetRPS: 100, Total: KindReport{Kind: "all", Requests: 600, OK: 600}}
		for s := range 6 {
			rr.Timeline = append(rr.Timeline, TimelinePoint{Second: s, Requests: 100, P50Ms: 1 + float64(s), P99Ms: 5 + float64(s*s)})
		}
		rep.Regions = append(rep.Regions, rr)
	}
	return rep
}

// TestHTMLReport: the page parses, holds one chart per region with both
// percentile lines and every event marked, and loads nothing from elsewhere.
func TestHTMLReport(t *testing.T) {
	var buf bytes.Buffer
	if err := sampleReport().WriteHTML(&buf); err != nil {
		t.Fatal(err)
	}
	page := buf.String()
	dec := xml.NewDecoder(strings.NewReader(page))
	dec.Strict, dec.AutoClose, dec.Entity = false, xml.HTMLAutoClose, xml.HTMLEntity
	charts := map[string]int{} // region -> event markers
	var current string
	var lines int
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("page does not parse: %v", err)
		}
		start, ok := tok.(xml.StartElement)
		if !ok {
			continue
		}
		attr := map[string]string{}
		for _, a := range start.Attr {
			attr[a.Name.Local] = a.Value
		}
		switch {
		case start.Name.Local == "script":
			t.Error("the page has a script")
		case attr["src"] != "" || strings.HasPrefix(attr["href"], "http"):
			t.Errorf("the page loads %s%s", attr["src"], attr["href"])
		case start.Name.Local == "svg" && attr["class"] == "latency-chart":
			current = attr["data-region"]
			charts[current] = 0
		case start.Name.Local == "g" && attr["class"] == "event-marker":
			charts[current]++
		case start.Name.Local == "polyline" && len(strings.Fields(attr["points"])) == 6:
			lines++
		}
	}
	if len(charts) != 3 {
		t.Fatalf("charts for %v, want ap-south, eu-west and us-east", charts)
	}
	for region, events := range charts {
		if events != 2 {
			t.Errorf("%s: %d event markers, want 2", region, events)
		}
	}
	if lines != 6 {
		t.Errorf("%d polylines with 6 points, want p50 and p99 for 3 regions", lines)
	}
	for _, want := range []string{"kill-leader n1", "restart-coordinators n1"} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
}

// TestHTMLReportRendersInChromium renders the page in headless Chromium
// (Debian's chromium package) when it is installed: the DOM it builds has
// one chart per region and no script ran into an error; a screenshot is
// taken. Without chromium the test skips.
func TestHTMLReportRendersInChromium(t *testing.T) {
	browser := ""
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			browser = p
			break
		}
	}
	if browser == "" {
		t.Skip("chromium is not installed (Debian: apt-get install chromium); skipping the headless render check")
	}
	dir := t.TempDir()
	page := filepath.Join(dir, "report.html")
	f, err := os.Create(page)
	if err != nil {
		t.Fatal(err)
	}
	if err := sampleReport().WriteHTML(f); err != nil {
		t.Fatal(err)
	}
	f.Close()
	args := []string{"--headless", "--no-sandbox", "--disable-gpu", "--user-data-dir=" + filepath.Join(dir, "profile")}
	dom, err := exec.Command(browser, append(args, "--enable-logging=stderr", "--dump-dom", "file://"+page)...).CombinedOutput()
	if err != nil {
		t.Fatalf("chromium --dump-dom: %v\n%s", err, dom)
	}
	if n := strings.Count(string(dom), `class="latency-chart"`); n != 3 {
		t.Errorf("rendered DOM has %d charts, want 3", n)
	}
	if strings.Contains(string(dom), "Uncaught") {
		t.Errorf("script error while rendering:\n%s", dom)
	}
	shot := filepath.Join(dir, "report.png")
	if out, err := exec.Command(browser, append(args, "--screenshot="+shot, "--window-size=1200,1600", "file://"+page)...).CombinedOutput(); err != nil {
		t.Fatalf("chromium --screenshot: %v\n%s", err, out)
	}
	if st, err := os.Stat(shot); err != nil || st.Size() == 0 {
		t.Fatalf("no screenshot: %v", err)
	}
}
