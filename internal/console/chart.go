package console

import (
	"math"
	"strconv"
	"strings"
)

// Tick is an axis mark: its position in the drawing and its label.
type Tick struct {
	Pos   float64
	Label string
}

// Point is one value of a series.
type Point struct{ X, Y float64 }

// Series is a named line of points; Class picks its colour in the style
// sheet (e.g. "s1", "s2").
type Series struct {
	Name   string
	Class  string
	Points []Point
}

// LineChart is the geometry of a line chart in a Width×Height drawing: the
// plot area, the axes' ticks and each series as an SVG polyline.
type LineChart struct {
	Title, XLabel, YLabel    string
	Width, Height            int
	Left, Top, Right, Bottom float64 // the plot area
	XTicks, YTicks           []Tick
	Series                   []LineSeries
	Empty                    bool // no points: the template says so instead
}

// LineSeries is a drawn series.
type LineSeries struct {
	Name, Class string
	Points      string // "x,y x,y ..." for <polyline points>
	Dots        []Dot
}

// Dot is one drawn point with its values.
type Dot struct {
	X, Y   float64 // position
	VX, VY float64 // values
}

// Chart dimensions.
const (
	chartWidth  = 640
	chartHeight = 260
	marginLeft  = 60
	marginRight = 20
	marginTop   = 14
	marginBot   = 44
)

// NewLineChart lays out series on shared axes. X values that are all
// whole numbers (epochs, trees) get whole-number ticks.
func NewLineChart(title, xLabel, yLabel string, series []Series) LineChart {
	c := LineChart{Title: title, XLabel: xLabel, YLabel: yLabel, Width: chartWidth, Height: chartHeight,
		Left: marginLeft, Top: marginTop, Right: chartWidth - marginRight, Bottom: chartHeight - marginBot}
	xmin, xmax, ymin, ymax := math.Inf(1), math.Inf(-1), math.Inf(1), math.Inf(-1)
	whole := true
	n := 0
	for _, s := range series {
		for _, p := range s.Points {
			if !finite(p.X) || !finite(p.Y) {
				continue
			}
			n++
			xmin, xmax = math.Min(xmin, p.X), math.Max(xmax, p.X)
			ymin, ymax = math.Min(ymin, p.Y), math.Max(ymax, p.Y)
			if p.X != math.Trunc(p.X) {
				whole = false
			}
		}
	}
	if n == 0 {
		c.Empty = true
		return c
	}
	if xmin == xmax {
		xmin, xmax = xmin-1, xmax+1
	}
	if ymin == ymax {
		pad := math.Max(math.Abs(ymin)*0.05, 0.01)
		ymin, ymax = ymin-pad, ymax+pad
	}
	ylo, yhi, ystep := niceRange(ymin, ymax, 5)
	xlo, xhi, xstep := xmin, xmax, 0.0
	if whole {
		xstep = math.Max(1, math.Ceil((xmax-xmin)/8))
	} else {
		xlo, xhi, xstep = niceRange(xmin, xmax, 6)
	}
	sx := func(v float64) float64 { return c.Left + (v-xlo)/(xhi-xlo)*(c.Right-c.Left) }
	sy := func(v float64) float64 { return c.Bottom - (v-ylo)/(yhi-ylo)*(c.Bottom-c.Top) }
	for v := ylo; v <= yhi+ystep/2; v += ystep {
		c.YTicks = append(c.YTicks, Tick{Pos: round1(sy(v)), Label: formatTick(v, ystep)})
	}
	for v := xlo; v <= xhi+xstep/2; v += xstep {
		c.XTicks = append(c.XTicks, Tick{Pos: round1(sx(v)), Label: formatTick(v, xstep)})
	}
	for _, s := range series {
		ls := LineSeries{Name: s.Name, Class: s.Class}
		var b strings.Builder
		for _, p := range s.Points {
			if !finite(p.X) || !finite(p.Y) {
				continue
			}
			d := Dot{X: round1(sx(p.X)), Y: round1(sy(p.Y)), VX: p.X, VY: p.Y}
			if b.Len() > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(fmtCoord(d.X) + "," + fmtCoord(d.Y))
			ls.Dots = append(ls.Dots, d)
		}
		ls.Points = b.String()
		c.Series = append(c.Series, ls)
	}
	return c
}

// BarItem is one bar to draw.
type BarItem struct {
	Label     string
	Value     float64
	ValueText string // shown beside the bar; default: the value
	Class     string // colour class; default "bar"
}

// BarChart is a horizontal bar chart: one row per item, bars growing from
// Zero (the middle when values have both signs).
type BarChart struct {
	Title         string
	Width, Height int
	LabelRight    float64 // labels end here (text-anchor end)
	Zero          float64 // x of the value 0
	Bars          []BarRow
	Signed        bool
}

// BarRow is a drawn bar.
type BarRow struct {
	BarItem
	X, Y, W, H float64
	TextX      float64 // where the value text starts
	TextY      float64
	LabelY     float64
}

// NewBarChart lays out items top to bottom in the given order.
func NewBarChart(title string, items []BarItem) BarChart {
	const (
		width     = 640
		rowH      = 24
		barH      = 16
		labelW    = 230.0
		valueW    = 90.0
		padTop    = 4
		padBottom = 4
	)
	c := BarChart{Title: title, Width: width, Height: padTop + padBottom + rowH*len(items), LabelRight: labelW - 8}
	maxAbs := 0.0
	for _, it := range items {
		if finite(it.Value) {
			maxAbs = math.Max(maxAbs, math.Abs(it.Value))
			if it.Value < 0 {
				c.Signed = true
			}
		}
	}
	if maxAbs == 0 {
		maxAbs = 1
	}
	left, right := labelW, float64(width)-valueW
	c.Zero = left
	span := right - left
	if c.Signed {
		c.Zero = left + span/2
		span /= 2
	}
	for i, it := range items {
		if it.Class == "" {
			it.Class = "bar"
		}
		if it.ValueText == "" {
			it.ValueText = strconv.FormatFloat(it.Value, 'g', 4, 64)
		}
		v := it.Value
		if !finite(v) {
			v = 0
		}
		w := math.Abs(v) / maxAbs * span
		y := float64(padTop + i*rowH + (rowH-barH)/2)
		r := BarRow{BarItem: it, Y: y, H: barH, W: round1(math.Max(w, 1)), LabelY: y + barH - 4, TextY: y + barH - 4}
		r.X = c.Zero
		if v < 0 {
			r.X = round1(c.Zero - r.W)
		}
		r.TextX = round1(math.Max(c.Zero, r.X+r.W) + 6)
		if c.Signed {
			r.TextX = right + 6
		}
		c.Bars = append(c.Bars, r)
	}
	return c
}

// Histogram is a vertical bar chart of counts per bucket.
type Histogram struct {
	Title, XLabel, YLabel    string
	Width, Height            int
	Left, Top, Right, Bottom float64
	Bars                     []HistBar
	YTicks                   []Tick
}

// HistBar is a drawn bucket.
type HistBar struct {
	Label          string
	Count          int
	Class          string
	X, Y, W, H     float64
	LabelX, CountY float64
}

// NewHistogram lays out counts per labelled bucket; classes (optional, one
// per bucket) colour the bars.
func NewHistogram(title, xLabel, yLabel string, labels []string, counts []int, classes []string) Histogram {
	h := Histogram{Title: title, XLabel: xLabel, YLabel: yLabel, Width: chartWidth, Height: chartHeight,
		Left: marginLeft, Top: marginTop + 10, Right: chartWidth - marginRight, Bottom: chartHeight - marginBot}
	maxC := 1
	for _, c := range counts {
		maxC = max(maxC, c)
	}
	_, hi, step := niceRange(0, float64(maxC), 5)
	step = math.Max(1, math.Round(step))
	hi = math.Max(hi, step)
	sy := func(v float64) float64 { return h.Bottom - v/hi*(h.Bottom-h.Top) }
	for v := 0.0; v <= hi+step/2; v += step {
		h.YTicks = append(h.YTicks, Tick{Pos: round1(sy(v)), Label: formatTick(v, step)})
	}
	n := len(labels)
	if n == 0 {
		return h
	}
	slot := (h.Right - h.Left) / float64(n)
	for i, l := range labels {
		c := 0
		if i < len(counts) {
			c = counts[i]
		}
		cls := "bar"
		if i < len(classes) && classes[i] != "" {
			cls = classes[i]
		}
		y := sy(float64(c))
		b := HistBar{Label: l, Count: c, Class: cls, X: round1(h.Left + float64(i)*slot + slot*0.1), W: round1(slot * 0.8),
			Y: round1(y), H: round1(h.Bottom - y), LabelX: round1(h.Left + float64(i)*slot + slot/2), CountY: round1(y - 4)}
		h.Bars = append(h.Bars, b)
	}
	return h
}

// Gauge places a value on a scale from Min to Max, for a bar with a marker.
type Gauge struct {
	Min, Max, Value float64
	Pos             float64 // 0..100, the marker's place in percent of the width
	Width           float64 // drawing width
	X               float64 // marker x in the drawing
}

// NewGauge clamps value to [lo, hi].
func NewGauge(lo, hi, value float64) Gauge {
	g := Gauge{Min: lo, Max: hi, Value: value, Width: 400}
	if hi > lo && finite(value) {
		g.Pos = math.Min(100, math.Max(0, (value-lo)/(hi-lo)*100))
	}
	g.X = round1(g.Pos / 100 * g.Width)
	return g
}

// niceRange widens [lo, hi] to round numbers with about n ticks and returns
// the step between ticks.
func niceRange(lo, hi float64, n int) (float64, float64, float64) {
	if !(hi > lo) {
		hi = lo + 1
	}
	step := niceNum((hi-lo)/float64(max(n-1, 1)), true)
	return math.Floor(lo/step) * step, math.Ceil(hi/step) * step, step
}

// niceNum is Heckbert's "nice numbers for graph labels".
func niceNum(x float64, round bool) float64 {
	if x <= 0 || !finite(x) {
		return 1
	}
	exp := math.Floor(math.Log10(x))
	f := x / math.Pow(10, exp)
	var nf float64
	switch {
	case round && f < 1.5:
		nf = 1
	case round && f < 3:
		nf = 2
	case round && f < 7:
		nf = 5
	case round:
		nf = 10
	case f <= 1:
		nf = 1
	case f <= 2:
		nf = 2
	case f <= 5:
		nf = 5
	default:
		nf = 10
	}
	return nf * math.Pow(10, exp)
}

func formatTick(v, step float64) string {
	decimals := 0
	if step > 0 && step < 1 {
		decimals = int(math.Min(6, math.Ceil(-math.Log10(step)-1e-9)))
	}
	if math.Abs(v) < step/1e6 {
		v = 0
	}
	return strconv.FormatFloat(v, 'f', decimals, 64)
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

func round1(v float64) float64 { return math.Round(v*10) / 10 }

func fmtCoord(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }
