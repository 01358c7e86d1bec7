//! The console's charts: SVG drawn by `charts-rs` from the admin API's numbers, in the
//! page's theme. Plan and Bedrock are always separate series.

use charts_rs::{BarChart, HorizontalBarChart, LineChart, Series};

use super::Theme;

/// A chart's size in the page (it scales with its box; this is its aspect).
const WIDTH: f32 = 600.0;
const HEIGHT: f32 = 300.0;

fn theme(theme: Theme) -> &'static str {
    match theme {
        Theme::Light => charts_rs::THEME_LIGHT,
        Theme::Dark => charts_rs::THEME_DARK,
    }
}

/// One named series of values.
pub(crate) struct Line {
    pub(crate) name: String,
    pub(crate) values: Vec<f64>,
}

impl Line {
    pub(crate) fn new(name: impl Into<String>, values: Vec<f64>) -> Self {
        Self {
            name: name.into(),
            values,
        }
    }

    /// The values times `factor` (money in a unit of [`money_unit`]).
    pub(crate) fn scaled(mut self, factor: f64) -> Self {
        for value in &mut self.values {
            *value *= factor;
        }
        self
    }

    /// Running totals instead of per-bucket values.
    pub(crate) fn cumulative(mut self) -> Self {
        let mut sum = 0.0;
        for value in &mut self.values {
            sum += *value;
            *value = sum;
        }
        self
    }

    fn series(&self) -> Series {
        // charts-rs draws f32; a chart needs no more precision than that.
        #[allow(clippy::cast_possible_truncation)]
        let values: Vec<f32> = self.values.iter().map(|value| *value as f32).collect();
        (self.name.as_str(), values).into()
    }
}

/// A unit for amounts of money up to `max` USD, and its factor: the axis labels have one
/// decimal, so small amounts are drawn in cents or micro-USD rather than as rows of zeros.
pub(crate) fn money_unit(max: f64) -> (&'static str, f64) {
    [("USD", 1.0), ("US cents", 100.0), ("micro-USD", 1e6)]
        .into_iter()
        .find(|(_, factor)| max * factor >= 10.0)
        .unwrap_or(("micro-USD", 1e6))
}

/// The largest value of any line.
pub(crate) fn max(lines: &[Line]) -> f64 {
    lines
        .iter()
        .flat_map(|line| line.values.iter().copied())
        .fold(0.0, f64::max)
}

fn finish<E: std::fmt::Display>(svg: Result<String, E>) -> String {
    svg.unwrap_or_else(|error| {
        tracing::warn!(%error, "drawing a chart failed");
        String::new()
    })
}

/// Values over time, one line per series.
pub(crate) fn lines(
    look: Theme,
    title: &str,
    x: Vec<String>,
    lines: &[Line],
    unit: &str,
) -> String {
    let mut chart =
        LineChart::new_with_theme(lines.iter().map(Line::series).collect(), x, theme(look));
    chart.title.text = title.to_owned();
    chart.width = WIDTH;
    chart.height = HEIGHT;
    if let Some(axis) = chart.y_axis_configs.first_mut() {
        axis.formatter = Some(format!("{{c}}{unit}"));
    }
    finish(chart.svg())
}

/// Values per bucket, bars side by side per series.
pub(crate) fn bars(look: Theme, title: &str, x: Vec<String>, lines: &[Line]) -> String {
    let mut chart =
        BarChart::new_with_theme(lines.iter().map(Line::series).collect(), x, theme(look));
    chart.title.text = title.to_owned();
    chart.width = WIDTH;
    chart.height = HEIGHT;
    finish(chart.svg())
}

/// A ranking: one bar per label.
pub(crate) fn ranking(look: Theme, title: &str, labels: Vec<String>, line: &Line) -> String {
    let height = HEIGHT.max(60.0 + 28.0 * labels.len() as f32);
    let mut chart = HorizontalBarChart::new_with_theme(vec![line.series()], labels, theme(look));
    chart.title.text = title.to_owned();
    chart.width = WIDTH;
    chart.height = height;
    finish(chart.svg())
}
