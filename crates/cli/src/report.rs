//! Reports a person reads: CSV tables and PNG line plots (plotters, with a bundled font so
//! no system font lookup is needed).

use std::path::Path;
use std::sync::Once;

use anyhow::{Context, Result};
use plotters::prelude::*;
use plotters::style::FontStyle;

/// DejaVu Sans (free licence, see assets/fonts/DejaVuSans.LICENSE).
static FONT: &[u8] = include_bytes!("../../../assets/fonts/DejaVuSans.ttf");
static REGISTER: Once = Once::new();

fn register_font() {
    REGISTER.call_once(|| {
        // The bundled font is a valid TTF; if registration ever failed, text would be missing
        // from the plot but the lines would still be drawn.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

/// One line of a plot.
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

/// A line plot of several series sharing the axes.
pub struct LinePlot<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    pub series: Vec<Series>,
}

const PNG_W: u32 = 1000;
const PNG_H: u32 = 600;

const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

impl LinePlot<'_> {
    /// Draws the plot to a PNG file (1000×600).
    pub fn write_png(&self, path: &Path) -> Result<()> {
        let bounds = self.bounds(&path.display().to_string())?;
        // Drawn into memory, encoded here and written atomically, so a full disk or a missing
        // permission is reported with the file and the OS error (and never leaves half a PNG).
        let mut rgb = vec![0u8; (PNG_W * PNG_H * 3) as usize];
        {
            let root = BitMapBackend::with_buffer(&mut rgb, (PNG_W, PNG_H)).into_drawing_area();
            self.draw(root, &path.display().to_string(), bounds)?;
        }
        let mut png_bytes = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut png_bytes, PNG_W, PNG_H);
            enc.set_color(png::ColorType::Rgb);
            enc.set_depth(png::BitDepth::Eight);
            let encoded = enc
                .write_header()
                .and_then(|mut w| w.write_image_data(&rgb).and_then(|_| w.finish()));
            encoded.with_context(|| format!("encoding {}", path.display()))?;
        }
        write_atomic(path, &png_bytes)
    }

    /// The plot as an SVG document (`w`×`h` user units; text in the reader's sans-serif font).
    pub fn svg(&self, w: u32, h: u32) -> Result<String> {
        let bounds = self.bounds(self.title)?;
        let mut out = String::new();
        {
            let root = SVGBackend::with_string(&mut out, (w, h)).into_drawing_area();
            self.draw(root, self.title, bounds)?;
        }
        Ok(out)
    }

    /// The axes' ranges: all finite points, with a margin above and below.
    fn bounds(&self, what: &str) -> Result<((f64, f64), (f64, f64))> {
        register_font();
        let finite = |p: &&(f64, f64)| p.0.is_finite() && p.1.is_finite();
        let all: Vec<(f64, f64)> = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().filter(finite).copied())
            .collect();
        anyhow::ensure!(!all.is_empty(), "nothing to plot for {what}");
        let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        for (x, y) in &all {
            x0 = x0.min(*x);
            x1 = x1.max(*x);
            y0 = y0.min(*y);
            y1 = y1.max(*y);
        }
        if x1 <= x0 {
            x1 = x0 + 1.0;
        }
        let pad = ((y1 - y0) * 0.05).max(1e-3);
        Ok(((x0, x1), (y0 - pad, y1 + pad)))
    }

    fn draw<DB: DrawingBackend>(
        &self,
        root: DrawingArea<DB, plotters::coord::Shift>,
        what: &str,
        ((x0, x1), (y0, y1)): ((f64, f64), (f64, f64)),
    ) -> Result<()> {
        let finite = |p: &&(f64, f64)| p.0.is_finite() && p.1.is_finite();
        let draw =
            |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow::anyhow!("drawing {what}: {e:?}");
        root.fill(&WHITE).map_err(draw)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(self.title, ("sans-serif", 26))
            .margin(16)
            .x_label_area_size(50)
            .y_label_area_size(70)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(draw)?;
        chart
            .configure_mesh()
            .x_desc(self.x_label)
            .y_desc(self.y_label)
            .label_style(("sans-serif", 15))
            .axis_desc_style(("sans-serif", 18))
            .x_label_formatter(&|x| axis_number(*x))
            .y_label_formatter(&|y| axis_number(*y))
            .draw()
            .map_err(draw)?;
        for (i, s) in self.series.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            let pts: Vec<(f64, f64)> = s.points.iter().filter(finite).copied().collect();
            chart
                .draw_series(LineSeries::new(pts, color.stroke_width(2)))
                .map_err(draw)?
                .label(s.label.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(3))
                });
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 16))
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(draw)?;
        root.present().map_err(draw)?;
        Ok(())
    }
}

/// An axis label: `human` from 1000 up, else up to three decimals without trailing zeros.
fn axis_number(x: f64) -> String {
    if x.abs() >= 1e3 {
        return human(x);
    }
    let s = format!("{x:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".into()
    } else {
        s.into()
    }
}

/// 1234567 → "1.23M".
pub fn human(x: f64) -> String {
    let a = x.abs();
    if a >= 1e9 {
        format!("{:.2}G", x / 1e9)
    } else if a >= 1e6 {
        format!("{:.2}M", x / 1e6)
    } else if a >= 1e3 {
        format!("{:.1}k", x / 1e3)
    } else {
        format!("{x:.0}")
    }
}

/// Writes rows to a CSV file with a header (values are plain numbers or simple words).
pub fn write_csv(path: &Path, header: &[&str], rows: &[Vec<String>]) -> Result<()> {
    let mut out = header.join(",");
    out.push('\n');
    for r in rows {
        out.push_str(&r.join(","));
        out.push('\n');
    }
    write_atomic(path, out.as_bytes())
}

/// Writes a file through a temporary name and a rename, so readers never see half of it.
/// On failure (full disk, no permission) the temporary file is removed and the error names
/// `path` and the OS error.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    covenant_node::spec::write_through(path, &path.with_extension("tmp~"), bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_formats_magnitudes() {
        assert_eq!(human(999.0), "999");
        assert_eq!(human(1500.0), "1.5k");
        assert_eq!(human(2_500_000.0), "2.50M");
        assert_eq!(human(3e9), "3.00G");
    }

    #[test]
    fn axis_numbers_keep_small_values_readable() {
        assert_eq!(axis_number(5.5), "5.5");
        assert_eq!(axis_number(0.125), "0.125");
        assert_eq!(axis_number(2.0), "2");
        assert_eq!(axis_number(-0.0001), "0");
        assert_eq!(axis_number(195_000.0), "195.0k");
    }

    #[test]
    fn png_is_written_and_is_a_png() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("plot.png");
        LinePlot {
            title: "t",
            x_label: "tokens",
            y_label: "loss",
            series: vec![
                Series {
                    label: "a".into(),
                    points: vec![(0.0, 3.0), (10.0, 2.0)],
                },
                Series {
                    label: "b".into(),
                    points: vec![(0.0, 3.5), (10.0, f64::NAN)],
                },
            ],
        }
        .write_png(&p)
        .unwrap();
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        assert!(bytes.len() > 2000, "a plot with text and lines is not tiny");
    }

    #[test]
    fn svg_has_the_lines_and_the_labels() {
        let svg = LinePlot {
            title: "loss <by> window",
            x_label: "window",
            y_label: "loss",
            series: vec![Series {
                label: "validation".into(),
                points: vec![(0.0, 3.0), (1.0, 2.5), (2.0, 2.0)],
            }],
        }
        .svg(600, 300)
        .unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..60]);
        assert!(svg.contains("<polyline"), "the line is drawn");
        assert!(svg.contains("validation"), "the legend names the series");
        assert!(svg.contains("loss &lt;by&gt; window"), "text is escaped");
    }

    #[test]
    fn empty_plot_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let r = LinePlot {
            title: "t",
            x_label: "x",
            y_label: "y",
            series: vec![],
        }
        .write_png(&dir.path().join("p.png"));
        assert!(r.is_err());
    }
}
