//! Charts drawn on the server as inline SVG: a line over time, bars over time and one
//! horizontal stacked bar. No script and nothing from elsewhere; colours come from classes
//! of the app's stylesheet. Each chart is an image with a title and a description for screen
//! readers, and its numbers follow it as a table anyone can open.

use maud::{html, Markup};

/// The drawing's size in SVG units; the stylesheet scales it to the card's width.
const WIDTH: f64 = 600.0;
const HEIGHT: f64 = 160.0;
/// Room for the value axis's labels on the left and the time labels below.
const LEFT: f64 = 34.0;
const BOTTOM: f64 = 20.0;
const TOP: f64 = 8.0;

/// One value of a chart over time, with the label of its moment (`3 Jun`).
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// The moment, for people.
    pub label: String,
    /// The value.
    pub value: f64,
}

/// One part of a stacked bar.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    /// What it is.
    pub label: String,
    /// How much of the whole.
    pub value: f64,
}

fn number(value: f64) -> String {
    if value.fract() == 0.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

/// The value axis: `max` at the top, half-way and zero, as gridlines with labels.
fn grid(max: f64) -> Markup {
    let plot = HEIGHT - BOTTOM - TOP;
    html! {
        g.chart-grid aria-hidden="true" {
            @for share in [0.0, 0.5, 1.0] {
                @let y = TOP + plot * (1.0 - share);
                line x1=(LEFT) x2=(WIDTH) y1=(y) y2=(y) {}
                text x=(LEFT - 6.0) y=(y + 4.0) text-anchor="end" { (number(max * share)) }
            }
        }
    }
}

/// The first and last labels under the plot.
fn time_labels(points: &[Point]) -> Markup {
    html! {
        g.chart-labels aria-hidden="true" {
            @if let Some(first) = points.first() {
                text x=(LEFT) y=(HEIGHT - 4.0) text-anchor="start" { (first.label) }
            }
            @if let (Some(last), true) = (points.last(), points.len() > 1) {
                text x=(WIDTH) y=(HEIGHT - 4.0) text-anchor="end" { (last.label) }
            }
        }
    }
}

/// The numbers of a chart as a table, folded under it.
fn numbers(caption: &str, head: (&str, &str), rows: &[(String, f64)]) -> Markup {
    html! {
        details.chart-numbers {
            summary { "The numbers" }
            table.table {
                caption.visually-hidden { (caption) }
                thead { tr { th scope="col" { (head.0) } th scope="col" { (head.1) } } }
                tbody {
                    @for (label, value) in rows {
                        tr { td { (label) } td { (number(*value)) } }
                    }
                }
            }
        }
    }
}

/// A line of `points` from 0 to `max`, oldest first. `id` makes the title's id unique on
/// the page; `summary` says in words what the line shows (its last value, its trend).
pub fn line(id: &str, title: &str, summary: &str, points: &[Point], max: f64) -> Markup {
    let max = if max > 0.0 { max } else { 1.0 };
    let plot_width = WIDTH - LEFT;
    let plot = HEIGHT - BOTTOM - TOP;
    let step = if points.len() > 1 { plot_width / (points.len() - 1) as f64 } else { 0.0 };
    let at = |i: usize, value: f64| (LEFT + step * i as f64, TOP + plot * (1.0 - (value / max).clamp(0.0, 1.0)));
    let path: Vec<String> = points
        .iter()
        .enumerate()
        .map(|(i, point)| {
            let (x, y) = at(i, point.value);
            format!("{x:.1},{y:.1}")
        })
        .collect();
    let rows: Vec<(String, f64)> = points.iter().map(|point| (point.label.clone(), point.value)).collect();
    html! {
        figure.chart data-chart=(id) {
            svg.chart-svg viewBox={ "0 0 " (WIDTH) " " (HEIGHT) } role="img"
                aria-labelledby={ (id) "-title " (id) "-desc" } xmlns="http://www.w3.org/2000/svg" {
                title id={ (id) "-title" } { (title) }
                desc id={ (id) "-desc" } { (summary) }
                (grid(max))
                @if points.len() > 1 {
                    polyline.chart-line points=(path.join(" ")) {}
                }
                @for (i, point) in points.iter().enumerate() {
                    @let (x, y) = at(i, point.value);
                    circle.chart-dot cx=(format!("{x:.1}")) cy=(format!("{y:.1}")) r="3" {
                        title { (point.label) ": " (number(point.value)) }
                    }
                }
                (time_labels(points))
            }
            figcaption { (title) " — " (summary) }
            (numbers(title, ("Date", "Value"), &rows))
        }
    }
}

/// Bars of `points` from 0 to `max`, oldest first.
pub fn bars(id: &str, title: &str, summary: &str, points: &[Point], max: f64) -> Markup {
    let max = if max > 0.0 { max } else { 1.0 };
    let plot = HEIGHT - BOTTOM - TOP;
    let slot = (WIDTH - LEFT) / points.len().max(1) as f64;
    let rows: Vec<(String, f64)> = points.iter().map(|point| (point.label.clone(), point.value)).collect();
    html! {
        figure.chart data-chart=(id) {
            svg.chart-svg viewBox={ "0 0 " (WIDTH) " " (HEIGHT) } role="img"
                aria-labelledby={ (id) "-title " (id) "-desc" } xmlns="http://www.w3.org/2000/svg" {
                title id={ (id) "-title" } { (title) }
                desc id={ (id) "-desc" } { (summary) }
                (grid(max))
                @for (i, point) in points.iter().enumerate() {
                    @let height = plot * (point.value / max).clamp(0.0, 1.0);
                    rect.chart-bar x=(format!("{:.1}", LEFT + slot * i as f64 + slot * 0.15))
                        y=(format!("{:.1}", TOP + plot - height)) width=(format!("{:.1}", slot * 0.7))
                        height=(format!("{height:.1}")) {
                        title { (point.label) ": " (number(point.value)) }
                    }
                }
                (time_labels(points))
            }
            figcaption { (title) " — " (summary) }
            (numbers(title, ("Week from", "Value"), &rows))
        }
    }
}

/// One horizontal bar of `total` split into `segments` (each a colour of its own), with a key
/// that names each segment and its value.
pub fn stacked(id: &str, title: &str, summary: &str, segments: &[Segment], total: f64) -> Markup {
    const BAR_HEIGHT: f64 = 28.0;
    let total = if total > 0.0 { total } else { 1.0 };
    let mut x = 0.0;
    let mut placed = Vec::with_capacity(segments.len());
    for segment in segments {
        let width = WIDTH * (segment.value / total).clamp(0.0, 1.0);
        placed.push((x, width, segment));
        x += width;
    }
    html! {
        figure.chart data-chart=(id) {
            svg.chart-svg.chart-stacked viewBox={ "0 0 " (WIDTH) " " (BAR_HEIGHT) } role="img"
                aria-labelledby={ (id) "-title " (id) "-desc" } xmlns="http://www.w3.org/2000/svg" {
                title id={ (id) "-title" } { (title) }
                desc id={ (id) "-desc" } { (summary) }
                rect.chart-rest x="0" y="0" width=(WIDTH) height=(BAR_HEIGHT) {}
                @for (i, (x, width, segment)) in placed.iter().enumerate() {
                    rect class={ "chart-seg chart-seg-" (i % 6) } x=(format!("{x:.1}")) y="0"
                        width=(format!("{width:.1}")) height=(BAR_HEIGHT) {
                        title { (segment.label) ": " (number(segment.value)) }
                    }
                }
            }
            figcaption { (title) " — " (summary) }
            ul.chart-key {
                @for (i, segment) in segments.iter().enumerate() {
                    li { span class={ "chart-swatch chart-seg-" (i % 6) } aria-hidden="true" {} (segment.label) ": " (number(segment.value)) }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn points(values: &[f64]) -> Vec<Point> {
        values.iter().enumerate().map(|(i, value)| Point { label: format!("day {i}"), value: *value }).collect()
    }

    #[test]
    fn a_line_is_an_svg_image_with_its_numbers_as_text() {
        let svg = line("health", "Health", "now 40", &points(&[100.0, 40.0]), 100.0).into_string();
        assert!(svg.contains("role=\"img\"") && svg.contains("<title id=\"health-title\">Health</title>"), "{svg}");
        // 100 at the top of the plot on the left, 40 on the right.
        assert!(svg.contains("points=\"34.0,8.0 600.0,87.2\""), "{svg}");
        assert!(svg.contains("<td>day 1</td><td>40</td>"), "{svg}");
    }

    #[test]
    fn bars_and_stacks_keep_to_their_scale() {
        let svg = bars("active", "Active", "2 last week", &points(&[0.0, 4.0]), 4.0).into_string();
        assert!(svg.contains("height=\"132.0\""), "the full bar is the whole plot: {svg}");
        let parts =
            [Segment { label: "Closeness".into(), value: 25.0 }, Segment { label: "Rating".into(), value: 50.0 }];
        let svg = stacked("factors", "Factors", "75 of 100", &parts, 100.0).into_string();
        assert!(svg.contains("x=\"0.0\" y=\"0\" width=\"150.0\""), "{svg}");
        assert!(svg.contains("x=\"150.0\" y=\"0\" width=\"300.0\""), "{svg}");
        assert!(svg.contains("Rating: 50"), "{svg}");
    }
}
