package sim

import (
	"fmt"
	"html/template"
	"io"
	"math"
	"strings"
)

// WriteReport writes a self-contained HTML page (inline SVG, no scripts, no
// network) with, for each result, pending and running jobs and booting and
// ready job slots over time, and everyone's cumulative cost on one chart.
func WriteReport(w io.Writer, title string, rs []Result) error {
	type panel struct {
		Name    string
		Summary string
		Chart   template.HTML
	}
	var panels []panel
	var costs []line
	for i, r := range rs {
		name := Setting{Policy: r.Policy, Params: r.Params}.String()
		s := r.Series
		if s == nil {
			continue
		}
		panels = append(panels, panel{
			Name: name,
			Summary: fmt.Sprintf("p95 wait %.0f s, p50 %.0f s; cost $%.2f (%.2f× the lower bound); %d Droplets, peak %d",
				r.WaitS.P95, r.WaitS.P50, r.CostUSD, r.CostRatio, r.DropletsCreated, r.PeakDroplets),
			Chart: chart(s.Step.Hours(), "jobs / slots", []line{
				{"pending jobs", "#d62728", ints(s.Pending)},
				{"running jobs", "#1f77b4", ints(s.Running)},
				{"slots booting", "#ff7f0e", ints(s.SlotsBooting)},
				{"slots ready", "#2ca02c", ints(s.SlotsReady)},
			}),
		})
		costs = append(costs, line{name, palette[i%len(palette)], s.CostUSD})
	}
	var step float64
	for _, r := range rs {
		if r.Series != nil {
			step = r.Series.Step.Hours()
			break
		}
	}
	return reportPage.Execute(w, map[string]any{
		"Title": title, "Panels": panels, "Cost": chart(step, "cumulative cost, USD", costs),
	})
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

const (
	chartW, chartH = 900.0, 220.0
	padL, padB     = 50.0, 25.0
	maxPoints      = 900
)

// chart draws lines over time (x in hours, one point per step) as SVG. Long
// series are reduced to at most maxPoints by keeping each bucket's maximum, so
// a short burst stays visible.
func chart(step float64, ylabel string, lines []line) template.HTML {
	n, ymax := 0, 0.0
	for _, l := range lines {
		n = max(n, len(l.Y))
		for _, y := range l.Y {
			ymax = math.Max(ymax, y)
		}
	}
	if n < 2 {
		return ""
	}
	ymax = niceCeil(ymax)
	hours := float64(n-1) * step
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif" font-size="11">`, chartW+padL+10, chartH+padB+10)
	plotW := chartW
	fmt.Fprintf(&b, `<rect x="%.0f" y="5" width="%.0f" height="%.0f" fill="none" stroke="#ccc"/>`, padL, plotW, chartH)
	ticks := 4 // or 5, whichever gives round labels (250 → 50s, not 62.5s)
	if q := ymax / 4; q != math.Trunc(q) {
		ticks = 5
	}
	for k := 0; k <= ticks; k++ {
		y := 5 + chartH - chartH*float64(k)/float64(ticks)
		fmt.Fprintf(&b, `<text x="%.0f" y="%.1f" text-anchor="end">%s</text>`, padL-4, y+4, trim(ymax*float64(k)/float64(ticks)))
		fmt.Fprintf(&b, `<line x1="%.0f" x2="%.0f" y1="%.1f" y2="%.1f" stroke="#eee"/>`, padL, padL+plotW, y, y)
	}
	tick := niceCeil(hours / 8)
	for h := 0.0; h <= hours+1e-9 && tick > 0; h += tick {
		x := padL + plotW*h/math.Max(hours, 1e-9)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.0f" text-anchor="middle">%sh</text>`, x, chartH+padB, trim(h))
	}
	fmt.Fprintf(&b, `<text x="12" y="%.0f" transform="rotate(-90 12 %.0f)" text-anchor="middle">%s</text>`, 5+chartH/2, 5+chartH/2, template.HTMLEscapeString(ylabel))
	for i, l := range lines {
		var pts strings.Builder
		bucket := max(1, (len(l.Y)+maxPoints-1)/maxPoints)
		for j := 0; j < len(l.Y); j += bucket {
			y := l.Y[j]
			for k := j; k < min(j+bucket, len(l.Y)); k++ {
				y = math.Max(y, l.Y[k])
			}
			x := padL + plotW*float64(j)/float64(n-1)
			fmt.Fprintf(&pts, "%.1f,%.1f ", x, 5+chartH-chartH*y/ymax)
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.3" points="%s"/>`, l.Color, pts.String())
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

var reportPage = template.Must(template.New("report").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{.Title}}</title>
<style>body{font-family:sans-serif;margin:2em;max-width:1000px;color:#222}h2{font-size:1.1em;margin-top:2em}p{margin:.3em 0}</style>
</head><body>
<h1>{{.Title}}</h1>
<h2>Cumulative cost</h2>
{{.Cost}}
{{range .Panels}}<h2>{{.Name}}</h2><p>{{.Summary}}</p>
{{.Chart}}
{{end}}
<p style="color:#777;margin-top:2em">Made by shoal sim: virtual time, the real policy and reconciler against the DigitalOcean and GitLab emulators.</p>
</body></html>
`))
