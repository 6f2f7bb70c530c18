//! Plots captag draws itself (no Python, no system fonts): a small list of shapes rendered both
//! as SVG text and as a PNG through the built-in bitmap font ([`crate::font`]). Two charts:
//! training curves of several runs (train loss, dev loss, dev BLEU-4, dev CIDEr-D per epoch) and
//! a bar chart of final scores with confidence whiskers.
use std::fmt::Write as _;
use std::path::Path;

use image::{Rgb, RgbImage};

use crate::{Error, Result};

/// Run colours: Okabe–Ito's eight (colour-blind safe), then four of ColorBrewer's Dark2 so a
/// comparison of up to twelve runs repeats none.
pub const PALETTE: [[u8; 3]; 12] = [
    [0, 114, 178],
    [230, 159, 0],
    [0, 158, 115],
    [204, 121, 167],
    [86, 180, 233],
    [213, 94, 0],
    [240, 228, 66],
    [0, 0, 0],
    [117, 112, 179],
    [102, 166, 30],
    [166, 118, 29],
    [231, 41, 138],
];
const GRAY: [u8; 3] = [120, 120, 120];
const BLACK: [u8; 3] = [0, 0, 0];

enum Shape {
    Line(f64, f64, f64, f64, [u8; 3]),
    Rect(f64, f64, f64, f64, [u8; 3]),
    /// x, y (top-left), text, scale.
    Text(f64, f64, String, u32),
}

pub struct Canvas {
    w: u32,
    h: u32,
    shapes: Vec<Shape>,
}

fn hex(c: [u8; 3]) -> String {
    format!("#{:02x}{:02x}{:02x}", c[0], c[1], c[2])
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

impl Canvas {
    pub fn new(w: u32, h: u32) -> Self {
        Canvas {
            w,
            h,
            shapes: vec![],
        }
    }

    fn line(&mut self, x0: f64, y0: f64, x1: f64, y1: f64, c: [u8; 3]) {
        self.shapes.push(Shape::Line(x0, y0, x1, y1, c));
    }

    fn rect(&mut self, x: f64, y: f64, w: f64, h: f64, c: [u8; 3]) {
        self.shapes.push(Shape::Rect(x, y, w, h, c));
    }

    fn text(&mut self, x: f64, y: f64, s: &str, scale: u32) {
        self.shapes.push(Shape::Text(x, y, s.to_string(), scale));
    }

    pub fn svg(&self) -> String {
        let mut s = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" viewBox=\"0 0 {} {}\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n",
            self.w, self.h, self.w, self.h
        );
        for sh in &self.shapes {
            let _ = match sh {
                Shape::Line(a, b, c, d, col) => writeln!(
                    s,
                    "<line x1=\"{a:.1}\" y1=\"{b:.1}\" x2=\"{c:.1}\" y2=\"{d:.1}\" stroke=\"{}\" stroke-width=\"1.5\"/>",
                    hex(*col)
                ),
                Shape::Rect(x, y, w, h, col) => writeln!(
                    s,
                    "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{h:.1}\" fill=\"{}\"/>",
                    hex(*col)
                ),
                Shape::Text(x, y, t, scale) => writeln!(
                    s,
                    "<text x=\"{x:.1}\" y=\"{:.1}\" font-family=\"monospace\" font-size=\"{}\">{}</text>",
                    y + 7.0 * *scale as f64,
                    9 * scale,
                    esc(t)
                ),
            };
        }
        s + "</svg>\n"
    }

    pub fn png(&self) -> RgbImage {
        let mut img = RgbImage::from_pixel(self.w, self.h, Rgb([255; 3]));
        let put = |img: &mut RgbImage, x: i64, y: i64, c: [u8; 3]| {
            if x >= 0 && y >= 0 && (x as u32) < self.w && (y as u32) < self.h {
                img.put_pixel(x as u32, y as u32, Rgb(c));
            }
        };
        for sh in &self.shapes {
            match sh {
                Shape::Line(x0, y0, x1, y1, c) => {
                    let steps = ((x1 - x0).abs().max((y1 - y0).abs()).ceil() as i64).max(1);
                    for k in 0..=steps {
                        let t = k as f64 / steps as f64;
                        let (x, y) = (x0 + (x1 - x0) * t, y0 + (y1 - y0) * t);
                        put(&mut img, x.round() as i64, y.round() as i64, *c);
                        put(&mut img, x.round() as i64, y.round() as i64 + 1, *c);
                    }
                }
                Shape::Rect(x, y, w, h, c) => {
                    for yy in (*y as i64)..((y + h) as i64) {
                        for xx in (*x as i64)..((x + w) as i64) {
                            put(&mut img, xx, yy, *c);
                        }
                    }
                }
                Shape::Text(x, y, t, scale) => {
                    crate::font::draw_text(
                        &mut img,
                        x.max(0.0) as u32,
                        y.max(0.0) as u32,
                        t,
                        *scale,
                        Rgb(BLACK),
                    );
                }
            }
        }
        img
    }

    /// Write `STEM.svg` and `STEM.png` atomically.
    pub fn save(&self, stem: &Path) -> Result<()> {
        let with = |ext: &str| std::path::PathBuf::from(format!("{}.{ext}", stem.display()));
        crate::fsio::write_atomic(&with("svg"), self.svg().as_bytes(), false)?;
        let mut bytes = std::io::Cursor::new(vec![]);
        self.png()
            .write_to(&mut bytes, image::ImageFormat::Png)
            .map_err(|e| Error::invalid(format!("{}: {e}", stem.display())))?;
        crate::fsio::write_atomic(&with("png"), bytes.get_ref(), false)
    }
}

fn fmt_tick(v: f64) -> String {
    if v.abs() >= 10.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// One panel of lines: `series[i]` = (run index, points (x, y)).
fn panel(
    cv: &mut Canvas,
    (px, py, pw, ph): (f64, f64, f64, f64),
    title: &str,
    series: &[(usize, Vec<(f64, f64)>)],
) {
    cv.text(px, py - 14.0, title, 1);
    cv.line(px, py + ph, px + pw, py + ph, GRAY);
    cv.line(px, py, px, py + ph, GRAY);
    let pts: Vec<(f64, f64)> = series.iter().flat_map(|s| s.1.iter().copied()).collect();
    if pts.is_empty() {
        cv.text(px + 10.0, py + ph / 2.0, "no data", 1);
        return;
    }
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in &pts {
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    if y1 <= y0 {
        y1 = y0 + 1e-9;
    }
    let pad = (y1 - y0) * 0.05;
    let (y0, y1) = (y0 - pad, y1 + pad);
    let sx = |x: f64| px + (x - x0) / (x1 - x0) * pw;
    let sy = |y: f64| py + ph - (y - y0) / (y1 - y0) * ph;
    for k in 0..=4 {
        let v = y0 + (y1 - y0) * k as f64 / 4.0;
        cv.line(px - 3.0, sy(v), px, sy(v), GRAY);
        cv.text(px - 40.0, sy(v) - 3.0, &fmt_tick(v), 1);
    }
    cv.text(px, py + ph + 4.0, &fmt_tick(x0), 1);
    cv.text(px + pw - 12.0, py + ph + 4.0, &fmt_tick(x1), 1);
    for (run, s) in series {
        let c = PALETTE[run % PALETTE.len()];
        for w in s.windows(2) {
            cv.line(sx(w[0].0), sy(w[0].1), sx(w[1].0), sy(w[1].1), c);
        }
        for &(x, y) in s {
            cv.rect(sx(x) - 2.0, sy(y) - 2.0, 4.0, 4.0, c);
        }
    }
}

/// Per-epoch values of one run, by metric name (`train_loss`, `dev_loss`, `bleu4`, `cider`).
pub struct Curves {
    pub name: String,
    pub points: Vec<(String, Vec<(f64, f64)>)>,
}

/// Read a run's `metrics.jsonl` into curves; a malformed line is an error naming it.
pub fn read_curves(name: &str, metrics: &Path) -> Result<Curves> {
    let text = crate::input::read_text(metrics, crate::input::TEXT, "a metrics file")?;
    let keys = ["train_loss", "dev_loss", "bleu4", "cider"];
    let mut points: Vec<(String, Vec<(f64, f64)>)> =
        keys.iter().map(|k| (k.to_string(), vec![])).collect();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let v: serde_json::Value = serde_json::from_str(line).map_err(|e| {
            Error::invalid(format!(
                "{}: line {}: {}",
                metrics.display(),
                i + 1,
                crate::input::one_line(e)
            ))
        })?;
        let epoch = v["epoch"].as_f64().unwrap_or((i + 1) as f64);
        for (k, p) in points.iter_mut() {
            if let Some(y) = v[k.as_str()].as_f64() {
                p.push((epoch, y));
            }
        }
    }
    Ok(Curves {
        name: name.to_string(),
        points,
    })
}

/// 2×2 panels of training curves with a legend.
pub fn curves_chart(runs: &[Curves]) -> Canvas {
    let legend_h = 16.0 * runs.len() as f64 + 10.0;
    let mut cv = Canvas::new(900, (640.0 + legend_h) as u32);
    let titles = [
        ("train_loss", "train loss"),
        ("dev_loss", "dev loss"),
        ("bleu4", "dev BLEU-4 (greedy)"),
        ("cider", "dev CIDEr-D (greedy)"),
    ];
    for (k, (key, title)) in titles.iter().enumerate() {
        let (col, row) = (k % 2, k / 2);
        let rect = (
            70.0 + col as f64 * 440.0,
            40.0 + row as f64 * 300.0,
            360.0,
            220.0,
        );
        let series: Vec<(usize, Vec<(f64, f64)>)> = runs
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let p = r
                    .points
                    .iter()
                    .find(|(n, _)| n == key)
                    .map(|(_, p)| p.clone());
                (i, p.unwrap_or_default())
            })
            .collect();
        panel(&mut cv, rect, &format!("{title} per epoch"), &series);
    }
    for (i, r) in runs.iter().enumerate() {
        let y = 630.0 + 16.0 * i as f64;
        cv.rect(70.0, y, 12.0, 10.0, PALETTE[i % PALETTE.len()]);
        cv.text(90.0, y + 1.0, &r.name, 1);
    }
    cv
}

/// A bar's value and its optional whisker `(lo, hi)`.
pub type Bar = (f64, Option<(f64, f64)>);

/// One bar group per metric; `bars[m][r]` = run `r`'s bar for metric `m`.
pub fn bar_chart(metrics: &[&str], runs: &[String], bars: &[Vec<Bar>]) -> Canvas {
    let legend_h = 16.0 * runs.len() as f64 + 10.0;
    let mut cv = Canvas::new(420 * metrics.len() as u32 + 40, (330.0 + legend_h) as u32);
    for (m, name) in metrics.iter().enumerate() {
        let (px, py, pw, ph) = (60.0 + m as f64 * 420.0, 40.0, 340.0, 240.0);
        cv.text(px, py - 20.0, name, 2);
        cv.line(px, py + ph, px + pw, py + ph, GRAY);
        cv.line(px, py, px, py + ph, GRAY);
        let top = bars[m]
            .iter()
            .map(|(v, w)| w.map_or(*v, |(_, hi)| hi.max(*v)))
            .fold(1e-9, f64::max)
            * 1.1;
        let sy = |y: f64| py + ph - (y.max(0.0) / top) * ph;
        for k in 0..=4 {
            let v = top * k as f64 / 4.0;
            cv.text(px - 45.0, sy(v) - 3.0, &fmt_tick(v), 1);
        }
        let bw = pw / (runs.len() as f64 * 1.5 + 0.5);
        for (r, (v, whisker)) in bars[m].iter().enumerate() {
            let x = px + bw * (0.5 + 1.5 * r as f64);
            cv.rect(x, sy(*v), bw, py + ph - sy(*v), PALETTE[r % PALETTE.len()]);
            // The value above the whisker's top, where no line crosses it.
            let label = whisker.map_or(*v, |(_, hi)| hi.max(*v));
            cv.text(x, sy(label) - 12.0, &format!("{v:.2}"), 1);
            if let Some((lo, hi)) = whisker {
                let c = x + bw / 2.0;
                cv.line(c, sy(*lo), c, sy(*hi), BLACK);
                cv.line(c - 5.0, sy(*lo), c + 5.0, sy(*lo), BLACK);
                cv.line(c - 5.0, sy(*hi), c + 5.0, sy(*hi), BLACK);
            }
        }
    }
    for (i, r) in runs.iter().enumerate() {
        let y = 300.0 + 16.0 * i as f64;
        cv.rect(60.0, y, 12.0, 10.0, PALETTE[i % PALETTE.len()]);
        cv.text(80.0, y + 1.0, r, 1);
    }
    cv
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twelve_runs_get_twelve_colours() {
        let distinct: std::collections::HashSet<_> = PALETTE.iter().collect();
        assert_eq!(distinct.len(), 12);
    }

    #[test]
    fn charts_render_as_svg_and_png() {
        let runs = vec![
            Curves {
                name: "lstm".into(),
                points: vec![("bleu4".into(), vec![(1.0, 0.1), (2.0, 0.15)])],
            },
            Curves {
                name: "a <b>".into(),
                points: vec![],
            },
        ];
        let cv = curves_chart(&runs);
        let svg = cv.svg();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("a &lt;b&gt;"));
        let png = cv.png();
        assert_eq!(png.dimensions(), (cv.w, cv.h));
        // Something was drawn in the run's colour.
        assert!(png.pixels().any(|p| p.0 == PALETTE[0]));
        let bars = bar_chart(
            &["BLEU-4"],
            &["x".into()],
            &[vec![(0.2, Some((0.18, 0.22)))]],
        );
        assert!(bars.svg().contains("<rect"));
    }
}
