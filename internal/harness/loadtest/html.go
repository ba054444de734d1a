package loadtest

import (
	"fmt"
	"html/template"
	"io"
	"math"
	"strconv"
	"strings"
)

// chart geometry, in SVG user units.
const (
	chartW, chartH         = 900.0, 260.0
	padL, padR, padT, padB = 60.0, 20.0, 20.0, 40.0
)

// htmlChart is one region's latency-over-time chart, drawn in Go so the page
// needs no script.
type htmlChart struct {
	Region        string
	P50, P99      string // SVG polyline points
	Events        []htmlEvent
	YTicks        []htmlTick
	XTicks        []htmlTick
	Width, Height float64
	Left, Right   float64
	Top, Bottom   float64
}

type htmlEvent struct {
	X     float64
	Label string
}

type htmlTick struct {
	Pos   float64
	Label string
}

// WriteHTML writes the report as one self-contained HTML page: the tables,
// and per region an inline SVG chart of p50 and p99 latency per second with
// the scenario's events as vertical lines. It loads nothing from elsewhere.
func (rep *Report) WriteHTML(w io.Writer) error {
	if len(rep.Regions) == 0 {
		return errNoRegions
	}
	var table strings.Builder
	if err := rep.WriteTable(&table); err != nil {
		return err
	}
	data := struct {
		Report *Report
		Table  string
		Charts []htmlChart
	}{Report: rep, Table: table.String()}
	for _, rr := range rep.Regions {
		data.Charts = append(data.Charts, rep.chart(rr))
	}
	return pageTemplate.Execute(w, data)
}

func (rep *Report) chart(rr RegionReport) htmlChart {
	c := htmlChart{Region: rr.Region, Width: chartW, Height: chartH, Left: padL, Right: chartW - padR, Top: padT, Bottom: chartH - padB}
	span := math.Max(rep.DurationS, 1)
	var maxMs float64
	for _, p := range rr.Timeline {
		maxMs = math.Max(maxMs, p.P99Ms)
	}
	maxMs = niceCeil(math.Max(maxMs, 1))
	x := func(s float64) float64 { return padL + (s/span)*(chartW-padL-padR) }
	y := func(ms float64) float64 { return chartH - padB - (ms/maxMs)*(chartH-padT-padB) }
	var p50, p99 []string
	for _, p := range rr.Timeline {
		t := float64(p.Second) + 0.5
		p50 = append(p50, fmt.Sprintf("%.1f,%.1f", x(t), y(p.P50Ms)))
		p99 = append(p99, fmt.Sprintf("%.1f,%.1f", x(t), y(p.P99Ms)))
	}
	c.P50, c.P99 = strings.Join(p50, " "), strings.Join(p99, " ")
	for _, e := range rep.Events {
		label := e.Action
		if e.Detail != "" {
			label += " " + e.Detail
		}
		c.Events = append(c.Events, htmlEvent{X: x(e.AtS), Label: label})
	}
	for i := 0; i <= 4; i++ {
		v := maxMs * float64(i) / 4
		c.YTicks = append(c.YTicks, htmlTick{Pos: y(v), Label: trimFloat(v) + " ms"})
	}
	step := math.Max(1, niceCeil(span/10))
	for s := 0.0; s <= span; s += step {
		c.XTicks = append(c.XTicks, htmlTick{Pos: x(s), Label: trimFloat(s) + "s"})
	}
	return c
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

// trimFloat prints an axis value without exponent or trailing zeros: 1500, 0.5.
func trimFloat(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

var pageTemplate = template.Must(template.New("report").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>edgecell loadtest: {{.Report.Scenario}}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
pre { background: #f6f6f6; padding: 1em; overflow-x: auto; font-size: 12px; }
.chart { margin: 1em 0 2em; }
.axis { stroke: #888; stroke-width: 1; }
.grid { stroke: #eee; stroke-width: 1; }
.p50 { fill: none; stroke: #1f77b4; stroke-width: 2; }
.p99 { fill: none; stroke: #d62728; stroke-width: 2; }
.event { stroke: #555; stroke-width: 1; stroke-dasharray: 4 3; }
text { font-size: 11px; fill: #444; }
.ok { color: #2a7d2a; } .broken { color: #c00; font-weight: bold; }
</style>
</head>
<body>
<h1>edgecell loadtest: {{.Report.Scenario}}</h1>
<p>Started {{.Report.StartedAt.Format "2006-01-02 15:04:05 UTC"}}, {{printf "%.1f" .Report.DurationS}} s,
{{printf "%.0f" .Report.TargetRPS}} requests/s scheduled.
{{if .Report.OK}}<span class="ok">Every checked invariant held.</span>{{else}}<span class="broken">An invariant was broken.</span>{{end}}</p>
<h2>Latency over time</h2>
<p>Per second of scheduled send time: <span style="color:#1f77b4">p50</span> and <span style="color:#d62728">p99</span>,
measured from the scheduled send time; dashed lines are the scenario's events.</p>
{{range .Charts}}
<div class="chart" id="chart-{{.Region}}">
<h3>{{.Region}}</h3>
<svg xmlns="http://www.w3.org/2000/svg" class="latency-chart" data-region="{{.Region}}" width="{{.Width}}" height="{{.Height}}" viewBox="0 0 {{.Width}} {{.Height}}">
{{$c := .}}{{range .YTicks}}<line class="grid" x1="{{$c.Left}}" x2="{{$c.Right}}" y1="{{.Pos}}" y2="{{.Pos}}"/><text x="{{$c.Left}}" dx="-4" y="{{.Pos}}" dy="4" text-anchor="end">{{.Label}}</text>
{{end}}{{range .XTicks}}<text x="{{.Pos}}" y="{{$c.Bottom}}" dy="16" text-anchor="middle">{{.Label}}</text>
{{end}}<line class="axis" x1="{{.Left}}" x2="{{.Right}}" y1="{{.Bottom}}" y2="{{.Bottom}}"/>
<line class="axis" x1="{{.Left}}" x2="{{.Left}}" y1="{{.Top}}" y2="{{.Bottom}}"/>
<polyline class="p50" points="{{.P50}}"/>
<polyline class="p99" points="{{.P99}}"/>
{{range .Events}}<g class="event-marker"><line class="event" x1="{{.X}}" x2="{{.X}}" y1="{{$c.Top}}" y2="{{$c.Bottom}}"/><text x="{{.X}}" dx="3" y="{{$c.Top}}" dy="10">{{.Label}}</text></g>
{{end}}</svg>
</div>
{{end}}
<h2>Summary</h2>
<pre>{{.Table}}</pre>
</body>
</html>
`))
