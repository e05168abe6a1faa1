package sim

import (
	"fmt"
	"html/template"
	"io"
	"math"
	"slices"
	"strings"
	"time"
)

// maxCharted is how many runs get charts of their own in a comparison's
// report: beyond that, only shoal's defaults, the frontier and the
// docker-machine setting of the same money do (the table lists every run).
const maxCharted = 8

// WriteReport writes a self-contained HTML page (inline SVG, no scripts, no
// network): a table of every run's figures, the cumulative cost of the runs
// charted, and for each of them pending and running jobs and booting and ready
// job slots over the whole run and over its busiest hours, where jobs waited
// most. compare says rs is a --compare (shoal's defaults first): the page then
// says how shoal stands, and marks the frontier.
func WriteReport(w io.Writer, title string, rs []Result, compare bool) error {
	type row struct {
		Name, Mark string
		R          Result
	}
	type panel struct {
		Name, Summary string
		Whole, Zoom   template.HTML
	}
	if len(rs) == 0 {
		return fmt.Errorf("no runs to report")
	}
	mark := map[int]string{}
	var findings []string
	var front []int
	if compare {
		front = Pareto(rs)
		for _, i := range front {
			mark[i] = "frontier"
		}
		findings = Findings(rs)
	}
	var rows []row
	for i, r := range rs {
		rows = append(rows, row{Name: Setting{Policy: r.Policy, Params: r.Params}.String(), Mark: mark[i], R: r})
	}
	charted := chartedRuns(rs, compare, front)
	if len(charted) == 0 {
		return fmt.Errorf("no run has time series to chart")
	}
	// Every chart spans the longest run, so that panels share one time scale
	// and the cost of a run that ends late is drawn to its end.
	axis, n := rs[charted[0]].Series, 0
	for _, i := range charted {
		n = max(n, len(rs[i].Series.Pending))
	}
	var costs []line
	for _, i := range charted {
		// After its run a fleet costs nothing more: its line stays flat.
		c := rs[i].Series.CostUSD
		if len(c) > 0 && len(c) < n {
			c = append(slices.Clip(c), slices.Repeat([]float64{c[len(c)-1]}, n-len(c))...)
		}
		costs = append(costs, line{rows[i].Name, palette[len(costs)%len(palette)], c})
	}
	from, to, waited := busiest(rs, charted, n)
	zoomed := to-from < n
	var panels []panel
	for _, i := range charted {
		r, s := rs[i], rs[i].Series
		lines := []line{
			{"pending jobs", "#d62728", ints(s.Pending)},
			{"running jobs", "#1f77b4", ints(s.Running)},
			{"slots booting", "#ff7f0e", ints(s.SlotsBooting)},
			{"slots ready", "#2ca02c", ints(s.SlotsReady)},
		}
		p := panel{
			Name: rows[i].Name,
			Summary: fmt.Sprintf("p95 wait %.0f s, p50 %.0f s, mean %.0f s; cost $%.2f (%.2f× the lower bound); %d Droplets, peak %d",
				r.WaitS.P95, r.WaitS.P50, r.WaitS.Mean, r.CostUSD, r.CostRatio, r.DropletsCreated, r.PeakDroplets),
			Whole: chart(axis, 0, n, "jobs / slots", lines),
		}
		if zoomed {
			p.Zoom = chart(axis, from, to, "jobs / slots", lines)
		}
		panels = append(panels, p)
	}
	var window string
	if zoomed {
		why := "where jobs waited most"
		if !waited {
			why = "where most jobs ran"
		}
		window = fmt.Sprintf("%s: %s to %s UTC", why, axis.at(from).Format("Mon 15:04"), axis.at(to-1).Format("Mon 15:04"))
	}
	return reportPage.Execute(w, map[string]any{
		"Title": title, "Rows": rows, "Findings": findings, "Panels": panels, "Window": window,
		"Cost": chart(axis, 0, n, "cumulative cost, USD", costs),
		"Some": compare && len(rs) > maxCharted,
	})
}

// chartedRuns picks the runs to chart: all of them, or in a large comparison
// shoal's defaults, the frontier (front) and the docker-machine setting of
// the same money. Runs without series are left out.
func chartedRuns(rs []Result, compare bool, front []int) []int {
	var idx []int
	if compare && len(rs) > maxCharted {
		idx = append([]int{0}, front...)
		if v := Judge(rs); v.DockerMachine >= 0 {
			idx = append(idx, v.DockerMachine)
		}
		slices.Sort(idx)
		idx = slices.Compact(idx)
	} else {
		for i := range rs {
			idx = append(idx, i)
		}
	}
	return slices.DeleteFunc(idx, func(i int) bool {
		s := rs[i].Series
		return s == nil || s.Step <= 0 || len(s.Pending) < 2
	})
}

// zoomSpan is the length of the busiest-hours chart; runs not much longer get
// none.
const zoomSpan = 2 * time.Hour

// busiest returns the sample window [from, to) of zoomSpan, within the first
// n samples, centred on the half hour in which the charted runs together had
// the most jobs pending (waited) or, if no job waited, the most running: where
// the policies differ. The whole run when it is short.
func busiest(rs []Result, charted []int, n int) (from, to int, waited bool) {
	width := int(zoomSpan / rs[charted[0]].Series.Step)
	if width < 4 || n < 2*width {
		return 0, n, false
	}
	load := make([]int, n)
	add := func(field func(*Series) []int) (total int) {
		for _, i := range charted {
			ys := field(rs[i].Series)
			for k, v := range ys[:min(n, len(ys))] {
				load[k] += v
				total += v
			}
		}
		return total
	}
	if waited = add(func(s *Series) []int { return s.Pending }) > 0; !waited {
		add(func(s *Series) []int { return s.Running })
	}
	hot := width / 4
	best, sum, at := -1, 0, 0
	for k := range n {
		sum += load[k]
		if k >= hot {
			sum -= load[k-hot]
		}
		if k >= hot-1 && sum > best {
			best, at = sum, k-hot+1
		}
	}
	// Centre on the half hour's weight, not its middle: a short queue is
	// then in the middle of the chart.
	centre, weight := at+hot/2, 0
	for k := at; k < at+hot; k++ {
		weight += load[k]
	}
	if weight > 0 {
		centre = 0
		for k := at; k < at+hot; k++ {
			centre += k * load[k]
		}
		centre /= weight
	}
	from = min(max(centre-width/2, 0), n-width)
	return from, from + width, waited
}

var palette = []string{"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#7f7f7f"}

type line struct {
	Name  string
	Color string
	Y     []float64
}

func ints(xs []int) []float64 {
	out := make([]float64, len(xs))
	for i, x := range xs {
		out[i] = float64(x)
	}
	return out
}

// at is the clock time of sample k.
func (s *Series) at(k int) time.Time { return s.Start.Add(time.Duration(k) * s.Step) }

const (
	chartW, chartH = 900.0, 220.0
	padL, padB     = 50.0, 25.0
	maxPoints      = 900
)

// tickSteps are the spacings of time labels, each dividing a day, so that
// labels fall on round clock times.
var tickSteps = []time.Duration{5 * time.Minute, 10 * time.Minute, 15 * time.Minute, 30 * time.Minute,
	time.Hour, 2 * time.Hour, 3 * time.Hour, 6 * time.Hour, 12 * time.Hour, 24 * time.Hour, 7 * 24 * time.Hour}

// chart draws samples [from, to) of lines as SVG, against the clock time of
// series s (UTC; traces start on a Monday). Long stretches are reduced to at
// most maxPoints by keeping each bucket's maximum, so a short burst stays
// visible.
func chart(s *Series, from, to int, ylabel string, lines []line) template.HTML {
	n := to - from
	if n < 2 {
		return ""
	}
	ymax := 0.0
	for _, l := range lines {
		for _, y := range l.Y[min(from, len(l.Y)):min(to, len(l.Y))] {
			ymax = math.Max(ymax, y)
		}
	}
	ymax = niceCeil(ymax)
	span := time.Duration(n-1) * s.Step
	xOf := func(t time.Time) float64 { return padL + chartW*float64(t.Sub(s.at(from)))/float64(span) }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %.0f %.0f" width="100%%" font-family="sans-serif" font-size="11">`, chartW+padL+30, chartH+padB+10)
	fmt.Fprintf(&b, `<rect x="%.0f" y="5" width="%.0f" height="%.0f" fill="none" stroke="#ccc"/>`, padL, chartW, chartH)
	ticks := 4 // or 5, whichever gives round labels (250 → 50s, not 62.5s)
	if q := ymax / 4; q != math.Trunc(q) {
		ticks = 5
	}
	for k := 0; k <= ticks; k++ {
		y := 5 + chartH - chartH*float64(k)/float64(ticks)
		fmt.Fprintf(&b, `<text x="%.0f" y="%.1f" text-anchor="end">%s</text>`, padL-4, y+4, trim(ymax*float64(k)/float64(ticks)))
		fmt.Fprintf(&b, `<line x1="%.0f" x2="%.0f" y1="%.1f" y2="%.1f" stroke="#eee"/>`, padL, padL+chartW, y, y)
	}
	tick := tickSteps[len(tickSteps)-1]
	for _, d := range tickSteps {
		if span/d <= 8 {
			tick = d
			break
		}
	}
	layout := "15:04"
	if span > 24*time.Hour {
		layout = "Mon 15:04"
	}
	for t := s.at(from).Truncate(tick); !t.After(s.at(to - 1)); t = t.Add(tick) {
		if t.Before(s.at(from)) {
			continue
		}
		label := t.Format(layout)
		switch {
		case span > 8*24*time.Hour: // weekdays repeat: count days
			label = fmt.Sprintf("day %d", int(t.Sub(s.Start)/(24*time.Hour))+1)
		case tick >= 24*time.Hour:
			label = t.Format("Mon")
		}
		fmt.Fprintf(&b, `<text x="%.1f" y="%.0f" text-anchor="middle">%s</text>`, xOf(t), chartH+padB, label)
	}
	fmt.Fprintf(&b, `<text x="12" y="%.0f" transform="rotate(-90 12 %.0f)" text-anchor="middle">%s</text>`, 5+chartH/2, 5+chartH/2, template.HTMLEscapeString(ylabel))
	bucket := max(1, (n+maxPoints-1)/maxPoints)
	for i, l := range lines {
		var pts strings.Builder
		for j := from; j < min(to, len(l.Y)); j += bucket {
			y := l.Y[j]
			for k := j; k < min(j+bucket, to, len(l.Y)); k++ {
				y = math.Max(y, l.Y[k])
			}
			fmt.Fprintf(&pts, "%.1f,%.1f ", xOf(s.at(j)), 5+chartH-chartH*y/ymax)
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.3" points="%s"><title>%s</title></polyline>`,
			l.Color, pts.String(), template.HTMLEscapeString(l.Name))
		fmt.Fprintf(&b, `<rect x="%.0f" y="%d" width="10" height="10" fill="%s"/><text x="%.0f" y="%d">%s</text>`,
			padL+10, 12+14*i, l.Color, padL+24, 21+14*i, template.HTMLEscapeString(l.Name))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

func niceCeil(x float64) float64 {
	if x <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(x)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*p >= x {
			return m * p
		}
	}
	return 10 * p
}

func trim(x float64) string {
	s := fmt.Sprintf("%.2f", x)
	s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	return s
}

var reportPage = template.Must(template.New("report").Funcs(template.FuncMap{
	"f1": func(x float64) string { return fmt.Sprintf("%.1f", x) },
	"f2": func(x float64) string { return fmt.Sprintf("%.2f", x) },
}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>{{.Title}}</title>
<style>
body{font-family:sans-serif;margin:2em;max-width:1200px;color:#222}
svg{max-width:1000px}
h2{font-size:1.1em;margin-top:2em}h3{font-size:1em;font-weight:normal;color:#555;margin:.8em 0 .2em}p{margin:.3em 0}
table{border-collapse:collapse;font-size:.85em}th,td{padding:.2em .5em;border-bottom:1px solid #eee;text-align:right}
th{border-bottom:1px solid #999;vertical-align:bottom}td:first-child,th:first-child{text-align:left;white-space:nowrap}
tr.frontier td{background:#f3f8ff}
</style>
</head><body>
<h1>{{.Title}}</h1>
{{range .Findings}}<p>{{.}}</p>
{{end}}
<table>
<tr><th>policy</th><th>wait p50 s</th><th>mean s</th><th>p95 s</th><th>max s</th><th>slowdown p95</th><th>cost $</th><th>× lower bound</th><th>Droplets</th><th>peak</th><th>API requests</th><th>429s</th><th>unfinished jobs</th><th></th></tr>
{{range .Rows}}<tr{{if .Mark}} class="frontier"{{end}}><td>{{.Name}}</td><td>{{f1 .R.WaitS.P50}}</td><td>{{f1 .R.WaitS.Mean}}</td><td>{{f1 .R.WaitS.P95}}</td><td>{{f1 .R.WaitS.Max}}</td><td>{{f2 .R.PipelineSlowdown.P95}}</td><td>{{f2 .R.CostUSD}}</td><td>{{f2 .R.CostRatio}}</td><td>{{.R.DropletsCreated}}</td><td>{{.R.PeakDroplets}}</td><td>{{.R.APIRequests}}</td><td>{{.R.RateLimitedResponses}}</td><td>{{.R.UnfinishedJobs}}</td><td>{{.Mark}}</td></tr>
{{end}}</table>
{{if .Some}}<p style="color:#555">Charts below: shoal's defaults, the frontier of p95 wait and cost, and the docker-machine setting nearest shoal's cost at or above it.</p>{{end}}
<h2>Cumulative cost</h2>
{{.Cost}}
{{range .Panels}}<h2>{{.Name}}</h2><p>{{.Summary}}</p>
<h3>Whole run (UTC)</h3>
{{.Whole}}
{{if .Zoom}}<h3>Busiest hours, {{$.Window}}</h3>
{{.Zoom}}{{end}}
{{end}}
<p style="color:#777;margin-top:2em">Made by shoal sim: virtual time, the real policy and reconciler against the DigitalOcean and GitLab emulators.</p>
</body></html>
`))
