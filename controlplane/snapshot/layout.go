package snapshot

import (
	"strings"
	"unicode"

	"github.com/go-pdf/fpdf"
)

// Page geometry, in millimetres (A4 portrait).
const (
	pageW, pageH = 210.0, 297.0
	marginX      = 15.0
	marginTop    = 20.0
	// bottomLimit is where body text stops; the footer sits below it.
	bottomLimit = pageH - 18.0
	contentW    = pageW - 2*marginX
	// cellMargin is the padding fpdf puts left and right of a cell's text.
	cellMargin = 0.8
)

// inner is the width text may take in a cell w wide.
func inner(w float64) float64 { return w - 2*cellMargin - 0.1 }

// doc lays text out on fpdf pages. fpdf's automatic page break is off:
// doc breaks pages itself, line by line, so that a table row or paragraph
// of any length continues on the next page (with the table's header
// repeated) instead of overflowing or being cut.
type doc struct {
	pdf *fpdf.Fpdf
	// repeat redraws the current table's header after a page break; nil
	// outside tables.
	repeat func()
}

type font struct {
	family string
	style  string
	size   float64
}

var (
	fBody    = font{fontSans, "", 9}
	fBold    = font{fontSans, "B", 9}
	fSmall   = font{fontSans, "", 7.5}
	fSmallB  = font{fontSans, "B", 7.5}
	fMono    = font{fontMono, "", 7.5}
	fTitle   = font{fontSans, "B", 16}
	fHeading = font{fontSans, "B", 12}
	fSub     = font{fontSans, "B", 10}
)

func (d *doc) use(f font) { d.pdf.SetFont(f.family, f.style, f.size) }

// lineH is the line height for a font size in points.
func lineH(f font) float64 { return f.size * 0.3528 * 1.35 }

// ensure starts a new page unless h millimetres fit above the bottom.
func (d *doc) ensure(h float64) {
	if d.pdf.GetY()+h <= bottomLimit {
		return
	}
	d.pdf.AddPage()
	if d.repeat != nil {
		d.repeat()
	}
}

// wrap splits text into lines no wider than w in font f: at spaces where
// possible, anywhere inside a word too long for a line (hashes, ids), and
// at every newline.
func (d *doc) wrap(f font, text string, w float64) []string {
	d.use(f)
	text = printable(text)
	var lines []string
	for _, para := range strings.Split(text, "\n") {
		lines = append(lines, d.wrapLine(para, w)...)
	}
	return lines
}

func (d *doc) wrapLine(s string, w float64) []string {
	if d.pdf.GetStringWidth(s) <= w {
		return []string{s}
	}
	var (
		lines []string
		cur   []rune
		curW  float64
		// lastSpace is the index in cur just after the last space.
		lastSpace = -1
	)
	for _, r := range s {
		rw := d.pdf.GetStringWidth(string(r))
		if curW+rw > w && len(cur) > 0 {
			if unicode.IsSpace(r) {
				lines = append(lines, strings.TrimRight(string(cur), " "))
				cur, curW, lastSpace = cur[:0], 0, -1
				continue
			}
			if lastSpace > 0 {
				lines = append(lines, strings.TrimRight(string(cur[:lastSpace]), " "))
				rest := append([]rune(nil), cur[lastSpace:]...)
				cur = append(cur[:0], rest...)
				curW = d.pdf.GetStringWidth(string(cur))
				lastSpace = -1
			} else {
				lines = append(lines, string(cur))
				cur, curW = cur[:0], 0
			}
		}
		cur = append(cur, r)
		curW += rw
		if unicode.IsSpace(r) {
			lastSpace = len(cur)
		}
	}
	if len(cur) > 0 || len(lines) == 0 {
		lines = append(lines, string(cur))
	}
	return lines
}

// heading starts a numbered section, on a new page if little room is left.
func (d *doc) heading(text string) {
	d.ensure(30)
	d.pdf.Ln(3)
	d.use(fHeading)
	d.pdf.SetX(marginX)
	d.pdf.CellFormat(contentW, lineH(fHeading)+1, printable(text), "B", 1, "L", false, 0, "")
	d.pdf.Ln(2)
}

// subheading titles a part of a section.
func (d *doc) subheading(text string) {
	d.ensure(18)
	d.pdf.Ln(1.5)
	d.para(fSub, text)
	d.pdf.Ln(0.5)
}

// para prints wrapped text across the content width.
func (d *doc) para(f font, text string) {
	d.paraAt(f, text, marginX, contentW)
}

func (d *doc) paraAt(f font, text string, x, w float64) {
	h := lineH(f)
	for _, l := range d.wrap(f, text, inner(w)) {
		d.ensure(h)
		d.use(f)
		d.pdf.SetX(x)
		d.pdf.CellFormat(w, h, l, "", 1, "L", false, 0, "")
	}
}

// kv prints a label and its value, the value wrapped beside the label.
func (d *doc) kv(label, value string) {
	d.kvFont(label, value, fBody)
}

func (d *doc) kvFont(label, value string, vf font) {
	const labelW = 42.0
	h := lineH(fBody)
	labels := d.wrap(fBold, label, inner(labelW))
	values := d.wrap(vf, orDash(value), inner(contentW-labelW))
	for i := range max(len(labels), len(values)) {
		d.ensure(h)
		d.pdf.SetX(marginX)
		d.use(fBold)
		l, v := "", ""
		if i < len(labels) {
			l = labels[i]
		}
		if i < len(values) {
			v = values[i]
		}
		d.pdf.CellFormat(labelW, h, l, "", 0, "L", false, 0, "")
		d.use(vf)
		d.pdf.CellFormat(contentW-labelW, h, v, "", 1, "L", false, 0, "")
	}
}

// column is one column of a table: its title, its share of the content
// width, its alignment and font.
type column struct {
	title string
	width float64 // fraction of contentW
	align string  // "L" or "R"
	mono  bool
}

// table prints rows under a header that repeats on every page the table
// spans. Cells wrap; a row taller than what is left of a page continues on
// the next one.
func (d *doc) table(cols []column, rows [][]string) {
	hdrH := lineH(fSmallB) + 1
	widths := make([]float64, len(cols))
	for i, c := range cols {
		widths[i] = c.width * contentW
	}
	header := func() {
		d.use(fSmallB)
		d.pdf.SetFillColor(225, 228, 235)
		d.pdf.SetX(marginX)
		for i, c := range cols {
			d.pdf.CellFormat(widths[i], hdrH, printable(c.title), "", 0, c.align, true, 0, "")
		}
		d.pdf.Ln(hdrH)
	}
	d.ensure(hdrH + 2*lineH(fSmall))
	header()
	d.repeat = header
	defer func() { d.repeat = nil }()

	lh := lineH(fSmall)
	for _, row := range rows {
		cells := make([][]string, len(cols))
		n := 1
		for i := range cols {
			f := fSmall
			if cols[i].mono {
				f = fMono
			}
			text := ""
			if i < len(row) {
				text = row[i]
			}
			cells[i] = d.wrap(f, text, inner(widths[i]))
			n = max(n, len(cells[i]))
		}
		// Keep short rows whole; long ones break between lines.
		d.ensure(min(float64(n), 4) * lh)
		for li := 0; li < n; li++ {
			d.ensure(lh)
			d.pdf.SetX(marginX)
			for i, c := range cols {
				f := fSmall
				if c.mono {
					f = fMono
				}
				d.use(f)
				text := ""
				if li < len(cells[i]) {
					text = cells[i][li]
				}
				d.pdf.CellFormat(widths[i], lh, text, "", 0, c.align, false, 0, "")
			}
			d.pdf.Ln(lh)
		}
		y := d.pdf.GetY()
		d.pdf.SetDrawColor(200, 200, 200)
		d.pdf.Line(marginX, y, marginX+contentW, y)
		d.pdf.SetDrawColor(0, 0, 0)
	}
	d.pdf.Ln(2)
}
