package bench

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"time"
)

// Plot draws the results as a PNG with the standard library only: apply
// time against the number of exclude CIDRs (log–log) and the connection
// rates (captured solid, excluded dashed).
func Plot(res *Results) ([]byte, error) {
	w, h := 1500, 620
	top := 0
	if res.Peers != nil {
		h, top = 1180, 560
	}
	c := &canvas{img: image.NewRGBA(image.Rect(0, 0, w, h))}
	c.fill(0, 0, w, h, color.White)
	c.text(20, 14, "nfintercept benchmark ("+res.Env.Date.Format("2006-01-02")+", kernel "+res.Env.Kernel+")", black, 2)
	if res.Peers != nil {
		c.peerPanel(res.Peers, image.Rect(110, 80, 1450, 480))
	}
	c.applyPanel(res, image.Rect(110, 80+top, 700, 520+top))
	c.connectPanel(res, image.Rect(860, 80+top, 1450, 520+top))
	var buf bytes.Buffer
	if err := png.Encode(&buf, c.img); err != nil {
		return nil, fmt.Errorf("encode png: %w", err)
	}
	return buf.Bytes(), nil
}

var (
	black  = color.RGBA{0, 0, 0, 255}
	grey   = color.RGBA{215, 215, 215, 255}
	dark   = color.RGBA{90, 90, 90, 255}
	blue   = color.RGBA{31, 90, 200, 255}
	sky    = color.RGBA{100, 170, 240, 255}
	green  = color.RGBA{40, 150, 60, 255}
	orange = color.RGBA{235, 130, 20, 255}
	red    = color.RGBA{200, 40, 40, 255}
)

type series struct {
	name   string
	col    color.RGBA
	dashed bool
	xs, ys []float64 // data coordinates; NaN ys are gaps
}

func (c *canvas) applyPanel(res *Results, r image.Rectangle) {
	methods := []struct {
		name string
		col  color.RGBA
	}{{MLibrary, sky}, {MFile, blue}, {MNft, green}, {MIptNft, orange}, {MIptLegacy, red}}
	var ss []series
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, m := range methods {
		s := series{name: m.name, col: m.col, dashed: m.name == MLibrary}
		if m.name == MFile {
			s.name = "nfintercept (process)"
		}
		for _, row := range res.Scaling {
			d := Find(row.Methods, m.name).Stats.Median
			if d <= 0 {
				continue
			}
			v := float64(d) / float64(time.Millisecond)
			s.xs = append(s.xs, float64(row.CIDRs))
			s.ys = append(s.ys, v)
			lo, hi = math.Min(lo, v), math.Max(hi, v)
		}
		ss = append(ss, s)
	}
	if math.IsInf(lo, 0) {
		return
	}
	ylo, yhi := math.Floor(math.Log10(lo)), math.Ceil(math.Log10(hi))
	if yhi == ylo {
		yhi++
	}
	xlo, xhi := 0.0, 5.0 // 1 .. 100,000 CIDRs
	px := func(x float64) int {
		return r.Min.X + int((math.Log10(math.Max(x, 1))-xlo)/(xhi-xlo)*float64(r.Dx()))
	}
	py := func(y float64) int {
		return r.Max.Y - int((math.Log10(y)-ylo)/(yhi-ylo)*float64(r.Dy()))
	}
	c.frame(r, "APPLY TIME (MEDIAN, LOG SCALE)", "EXCLUDE CIDRS", "MILLISECONDS")
	for e := xlo; e <= xhi; e++ {
		x := px(math.Pow(10, e))
		c.line(x, r.Min.Y, x, r.Max.Y, grey, 1, false)
		lbl := fmt.Sprintf("%.0f", math.Pow(10, e))
		c.text(x-c.textWidth(lbl, 2)/2, r.Max.Y+10, lbl, black, 2)
	}
	for e := ylo; e <= yhi; e++ {
		y := py(math.Pow(10, e))
		c.line(r.Min.X, y, r.Max.X, y, grey, 1, false)
		lbl := trimFloat(math.Pow(10, e))
		c.text(r.Min.X-12-c.textWidth(lbl, 2), y-7, lbl, black, 2)
	}
	for _, s := range ss {
		c.series(s, px, py)
	}
	c.legend(r.Min.X+12, r.Min.Y+12, ss)
	c.border(r)
}

// peerPanel draws the comparison with istio-iptables as grouped bars on a
// log scale, each labelled with its median.
func (c *canvas) peerPanel(pr *PeerResults, r image.Rectangle) {
	groups := []struct {
		label string
		rs    []MethodResult
	}{{"APPLY INTO A FRESH POD", pr.Fresh},
		{fmt.Sprintf("%d PODS PROGRAMMED AT ONCE", pr.PodsAtOnce), pr.Pods},
		{"RE-APPLY OF THE SAME OPTIONS", pr.Reapply}}
	peers := []series{{name: PNfi, col: blue}, {name: PIpt, col: red}, {name: PIstNft, col: orange}}
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, g := range groups {
		for _, p := range peers {
			if d := Find(g.rs, p.name).Stats.Median; d > 0 {
				v := float64(d) / float64(time.Millisecond)
				lo, hi = math.Min(lo, v), math.Max(hi, v)
			}
		}
	}
	if math.IsInf(lo, 0) {
		return
	}
	ylo, yhi := math.Floor(math.Log10(lo)), math.Ceil(math.Log10(hi))
	if yhi == ylo {
		yhi++
	}
	py := func(y float64) int {
		return r.Max.Y - int((math.Log10(y)-ylo)/(yhi-ylo)*float64(r.Dy()))
	}
	c.frame(r, "AGAINST ISTIO-IPTABLES: WHOLE PROCESSES UNDER NSENTER (MEDIAN, LOG SCALE)", "", "MILLISECONDS")
	for e := ylo; e <= yhi; e++ {
		y := py(math.Pow(10, e))
		c.line(r.Min.X, y, r.Max.X, y, grey, 1, false)
		lbl := trimFloat(math.Pow(10, e))
		c.text(r.Min.X-12-c.textWidth(lbl, 2), y-7, lbl, black, 2)
	}
	gw := r.Dx() / len(groups)
	bw := gw / (len(peers) + 2)
	for gi, g := range groups {
		x0 := r.Min.X + gi*gw + bw
		c.text(r.Min.X+gi*gw+(gw-c.textWidth(g.label, 2))/2, r.Max.Y+10, g.label, black, 2)
		for pi, p := range peers {
			d := Find(g.rs, p.name).Stats.Median
			if d <= 0 {
				continue
			}
			y := py(float64(d) / float64(time.Millisecond))
			x := x0 + pi*bw
			c.fill(x+4, y, x+bw-4, r.Max.Y, p.col)
			lbl := ms(d)
			c.text(x+(bw-c.textWidth(lbl, 2))/2, y-20, lbl, black, 2)
		}
	}
	c.legend(r.Min.X+12, r.Min.Y+12, peers)
	c.border(r)
}

func (c *canvas) connectPanel(res *Results, r image.Rectangle) {
	var counts []int
	seen := map[int]bool{}
	hi := 0.0
	for _, cr := range res.Connect {
		if !seen[cr.CIDRs] {
			seen[cr.CIDRs] = true
			counts = append(counts, cr.CIDRs)
		}
		hi = math.Max(hi, cr.Median)
	}
	if len(counts) == 0 || hi == 0 {
		return
	}
	step := niceStep(hi / 5)
	yhi := math.Ceil(hi*1.05/step) * step
	px := func(i float64) int {
		return r.Min.X + 40 + int(i/float64(max(len(counts)-1, 1))*float64(r.Dx()-80))
	}
	py := func(y float64) int { return r.Max.Y - int(y/yhi*float64(r.Dy())) }
	c.frame(r, "NEW CONNECTIONS PER SECOND (MEDIAN)", "EXCLUDE CIDRS", "CONNECTIONS/S")
	for i, n := range counts {
		x := px(float64(i))
		c.line(x, r.Min.Y, x, r.Max.Y, grey, 1, false)
		lbl := fmt.Sprint(n)
		c.text(x-c.textWidth(lbl, 2)/2, r.Max.Y+10, lbl, black, 2)
	}
	for y := 0.0; y <= yhi+step/2; y += step {
		yy := py(y)
		c.line(r.Min.X, yy, r.Max.X, yy, grey, 1, false)
		lbl := fmt.Sprintf("%.0f", y)
		c.text(r.Min.X-12-c.textWidth(lbl, 2), yy-7, lbl, black, 2)
	}
	engines := []struct {
		name, short string
		col         color.RGBA
	}{{EngineNft, "NFT SETS", blue}, {EngineLegacy, "IPTABLES-LEGACY", red}, {EngineIptNft, "IPTABLES-NFT", orange}}
	var ss []series
	for _, e := range engines {
		for _, captured := range []bool{true, false} {
			s := series{name: e.short + " " + destName(captured), col: e.col, dashed: !captured}
			for i, n := range counts {
				if v := connectMedian(res, e.name, n, captured); v > 0 {
					s.xs = append(s.xs, float64(i))
					s.ys = append(s.ys, v)
				}
			}
			ss = append(ss, s)
		}
	}
	for _, s := range ss {
		c.series(s, px, func(y float64) int { return py(y) })
	}
	c.legend(r.Min.X+12, r.Max.Y-12-len(ss)*22, ss)
	c.border(r)
}

func trimFloat(v float64) string {
	if v >= 1 {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%g", v)
}

// niceStep rounds v up to 1, 2 or 5 times a power of ten.
func niceStep(v float64) float64 {
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

// --- drawing ---

type canvas struct{ img *image.RGBA }

func (c *canvas) set(x, y int, col color.RGBA) {
	if image.Pt(x, y).In(c.img.Rect) {
		c.img.SetRGBA(x, y, col)
	}
}

func (c *canvas) fill(x0, y0, x1, y1 int, col color.Color) {
	for y := y0; y < y1; y++ {
		for x := x0; x < x1; x++ {
			c.img.Set(x, y, col)
		}
	}
}

// line draws a width-pixel line; dashed lines alternate 10 on, 7 off.
func (c *canvas) line(x0, y0, x1, y1 int, col color.RGBA, width int, dashed bool) {
	dx, dy := abs(x1-x0), -abs(y1-y0)
	sx, sy := sign(x1-x0), sign(y1-y0)
	err := dx + dy
	for i := 0; ; i++ {
		if !dashed || i%17 < 10 {
			for ox := -(width - 1) / 2; ox <= width/2; ox++ {
				for oy := -(width - 1) / 2; oy <= width/2; oy++ {
					c.set(x0+ox, y0+oy, col)
				}
			}
		}
		if x0 == x1 && y0 == y1 {
			return
		}
		e2 := 2 * err
		if e2 >= dy {
			err += dy
			x0 += sx
		}
		if e2 <= dx {
			err += dx
			y0 += sy
		}
	}
}

func (c *canvas) series(s series, px func(float64) int, py func(float64) int) {
	for i := range s.xs {
		x, y := px(s.xs[i]), py(s.ys[i])
		if i > 0 {
			c.line(px(s.xs[i-1]), py(s.ys[i-1]), x, y, s.col, 3, s.dashed)
		}
		c.fill(x-4, y-4, x+5, y+5, s.col)
	}
}

func (c *canvas) legend(x, y int, ss []series) {
	wmax := 0
	for _, s := range ss {
		wmax = max(wmax, c.textWidth(s.name, 2))
	}
	box := image.Rect(x-8, y-8, x+46+wmax+8, y+len(ss)*22+2)
	c.fill(box.Min.X, box.Min.Y, box.Max.X, box.Max.Y, color.White)
	c.border(box)
	for i, s := range ss {
		yy := y + i*22
		c.line(x, yy+7, x+36, yy+7, s.col, 3, s.dashed)
		c.text(x+46, yy, s.name, black, 2)
	}
}

func (c *canvas) frame(r image.Rectangle, title, xlabel, ylabel string) {
	c.text(r.Min.X, r.Min.Y-36, title, black, 2)
	c.text(r.Min.X+(r.Dx()-c.textWidth(xlabel, 2))/2, r.Max.Y+36, xlabel, dark, 2)
	c.textUp(r.Min.X-96, r.Min.Y+(r.Dy()+c.textWidth(ylabel, 2))/2, ylabel, dark, 2)
}

func (c *canvas) border(r image.Rectangle) {
	c.line(r.Min.X, r.Min.Y, r.Max.X, r.Min.Y, black, 1, false)
	c.line(r.Min.X, r.Max.Y, r.Max.X, r.Max.Y, black, 1, false)
	c.line(r.Min.X, r.Min.Y, r.Min.X, r.Max.Y, black, 1, false)
	c.line(r.Max.X, r.Min.Y, r.Max.X, r.Max.Y, black, 1, false)
}

func (c *canvas) textWidth(s string, scale int) int {
	n := len([]rune(s))
	if n == 0 {
		return 0
	}
	return (n*(glyphW+1) - 1) * scale
}

// text draws s with its top-left corner at (x, y).
func (c *canvas) text(x, y int, s string, col color.RGBA, scale int) {
	c.drawText(s, col, scale, func(gx, gy int) (int, int) { return x + gx, y + gy })
}

// textUp draws s rotated a quarter turn counter-clockwise, starting at
// (x, y) and going up.
func (c *canvas) textUp(x, y int, s string, col color.RGBA, scale int) {
	c.drawText(s, col, scale, func(gx, gy int) (int, int) { return x + gy, y - gx })
}

func (c *canvas) drawText(s string, col color.RGBA, scale int, at func(gx, gy int) (int, int)) {
	for i, r := range []rune(s) {
		g := glyph(r)
		for row := 0; row < glyphH; row++ {
			for bit := 0; bit < glyphW; bit++ {
				if g[row]&(1<<(glyphW-1-bit)) == 0 {
					continue
				}
				for sy := 0; sy < scale; sy++ {
					for sx := 0; sx < scale; sx++ {
						px, py := at((i*(glyphW+1)+bit)*scale+sx, row*scale+sy)
						c.set(px, py, col)
					}
				}
			}
		}
	}
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

func sign(v int) int {
	switch {
	case v < 0:
		return -1
	case v > 0:
		return 1
	}
	return 0
}
