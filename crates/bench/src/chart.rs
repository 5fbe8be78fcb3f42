//! The PNG chart of a suite run: one horizontal bar per workload showing
//! postern's advantage over the reference (1.0 = as fast / as small as
//! Postfix + Dovecot), with the absolute figures in the labels.
//!
//! Text is drawn with plotters' `ab_glyph` backend from the DejaVu Sans
//! TrueType file (Debian `fonts-dejavu-core`, installed by
//! `scripts/bench.sh`), so no fontconfig/freetype development files are
//! needed to build.

use std::path::Path;

use anyhow::{Context as _, bail};
use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::suite::Figure;

const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// Draw `figs` into `out` (PNG).
pub fn draw(figs: &[Figure], out: &Path, date: &str) -> anyhow::Result<()> {
    let font = std::fs::read(FONT)
        .with_context(|| format!("{FONT} (Debian package fonts-dejavu-core)"))?;
    let font: &'static [u8] = Box::leak(font.into_boxed_slice());
    if plotters::style::register_font("sans-serif", FontStyle::Normal, font).is_err() {
        bail!("{FONT} is not a usable TrueType font");
    }
    let rows: Vec<(&Figure, f64)> = figs.iter().filter_map(|f| Some((f, f.ratio()?))).collect();
    if rows.is_empty() {
        bail!("no figure has a reference value to compare with");
    }
    // Log scale: 0.5× and 2× are the same distance from 1.0, and one large
    // ratio (memory) does not flatten the others.
    let max = rows.iter().map(|r| r.1).fold(1.0f64, f64::max) * 3.0;
    let min = rows.iter().map(|r| r.1).fold(1.0f64, f64::min) / 3.0;
    let height = 120 + 60 * rows.len() as u32;
    let root = BitMapBackend::new(out, (1100, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("postern vs Postfix + Dovecot ({date}): advantage, 1.0 = equal"),
            ("sans-serif", 22),
        )
        .margin(15)
        .x_label_area_size(35)
        .y_label_area_size(10)
        .build_cartesian_2d((min..max).log_scale(), 0..rows.len())?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .disable_y_axis()
        .x_desc("times better than the reference (log scale)")
        .label_style(("sans-serif", 14))
        .draw()?;
    for (i, (f, ratio)) in rows.iter().enumerate() {
        let y = rows.len() - 1 - i;
        let color = if *ratio >= 1.0 {
            RGBColor(46, 125, 50)
        } else {
            RGBColor(198, 40, 40)
        };
        chart.draw_series(std::iter::once(Rectangle::new(
            [(min, y), (*ratio, y + 1)],
            color.mix(0.55).filled(),
        )))?;
        let label = format!(
            "{}: {ratio:.2}×  ({:.1} vs {:.1} {})",
            f.name,
            f.postern,
            f.reference.unwrap_or(0.0),
            f.unit
        );
        chart.draw_series(std::iter::once(Text::new(
            label,
            (min * 1.05, y + 1),
            ("sans-serif", 15).into_font(),
        )))?;
    }
    chart.draw_series(LineSeries::new(
        [(1.0, 0), (1.0, rows.len())],
        BLACK.stroke_width(2),
    ))?;
    root.present().context("write PNG")?;
    Ok(())
}
