//! The report's plots, drawn as inline SVG with `plotters` (text as SVG text, so
//! the browser renders it; no fonts are needed here). Each function returns the
//! SVG, or a short paragraph when there is nothing to draw or the drawing failed.

use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use autoglm_tune::{Distribution, FrozenTrial, ParamValue, TrialState};

use super::esc;

/// Width and height of a plot, px (the page is 980 px wide).
const SIZE: (u32, u32) = (940, 340);
const FONT: &str = "sans-serif";
const COMPLETE: RGBColor = RGBColor(31, 119, 180);
const PRUNED: RGBColor = RGBColor(150, 150, 150);
const CHOSEN: RGBColor = RGBColor(214, 39, 40);

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;
type Drawn = Result<(), String>;

/// Runs `draw` on a fresh SVG drawing area of `size`.
fn svg(size: (u32, u32), draw: impl FnOnce(&Area<'_>) -> Drawn) -> String {
    let mut out = String::new();
    let result = {
        let root = SVGBackend::with_string(&mut out, size).into_drawing_area();
        root.fill(&WHITE)
            .map_err(|e| e.to_string())
            .and_then(|()| draw(&root))
            .and_then(|()| root.present().map_err(|e| e.to_string()))
    };
    match result {
        Ok(()) => out,
        Err(e) => format!("<p>This plot could not be drawn: {}</p>", esc(&e)),
    }
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// The range of `values` with a margin (a unit range around a single value).
fn span(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
    if !lo.is_finite() {
        return None;
    }
    let pad = if hi > lo {
        (hi - lo) * 0.06
    } else {
        lo.abs().max(1.0) * 0.05
    };
    Some((lo - pad, hi + pad))
}

/// The legend of a chart, bottom right, on a white box.
fn legend<'a, DB: DrawingBackend + 'a, C: plotters::coord::CoordTranslate>(
    chart: &mut ChartContext<'a, DB, C>,
    position: SeriesLabelPosition,
) -> Drawn {
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .label_font((FONT, 13))
        .draw()
        .map_err(err)
}

/// Where a chart over `x` × `y` puts its legend so that it hides none of `points`:
/// the first empty corner of lower right, upper right, upper left, lower left (each
/// candidate box 45 % of the width and 35 % of the height); when every corner holds
/// some, the upper right of a y range raised by 45 % (an empty band above the data).
/// Returns the position and the y range to draw.
fn corner(
    points: impl Iterator<Item = (f64, f64)> + Clone,
    x: &std::ops::Range<f64>,
    y: &std::ops::Range<f64>,
) -> (SeriesLabelPosition, std::ops::Range<f64>) {
    let (w, h) = ((x.end - x.start) * 0.45, (y.end - y.start) * 0.35);
    let corners = [
        (
            SeriesLabelPosition::LowerRight,
            x.end - w..x.end,
            y.start..y.start + h,
        ),
        (
            SeriesLabelPosition::UpperRight,
            x.end - w..x.end,
            y.end - h..y.end,
        ),
        (
            SeriesLabelPosition::UpperLeft,
            x.start..x.start + w,
            y.end - h..y.end,
        ),
        (
            SeriesLabelPosition::LowerLeft,
            x.start..x.start + w,
            y.start..y.start + h,
        ),
    ];
    let hidden = |xr: &std::ops::Range<f64>, yr: &std::ops::Range<f64>| {
        let inside = |v: f64, r: &std::ops::Range<f64>| r.start <= v && v <= r.end;
        points
            .clone()
            .filter(|&(px, py)| inside(px, xr) && inside(py, yr))
            .count()
    };
    for (pos, xr, yr) in corners {
        if hidden(&xr, &yr) == 0 {
            return (pos, y.clone());
        }
    }
    (
        SeriesLabelPosition::UpperRight,
        y.start..y.end + 0.45 * (y.end - y.start),
    )
}

/// Points along a polyline (16 per segment and its ends), so that [`corner`] sees
/// lines as well as markers.
fn along(line: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let mut out: Vec<(f64, f64)> = line
        .windows(2)
        .flat_map(|w| {
            let ((x0, y0), (x1, y1)) = (w[0], w[1]);
            (0..16).map(move |i| {
                let t = f64::from(i) / 16.0;
                (x0 + t * (x1 - x0), y0 + t * (y1 - y0))
            })
        })
        .collect();
    out.extend(line.last());
    out
}

/// Integer tick labels only (a fractional key point gets none).
fn integer_label(x: &f64) -> String {
    if (x - x.round()).abs() < 1e-9 {
        format!("{}", x.round() as i64)
    } else {
        String::new()
    }
}

/// A chart of the report: numbers on both axes, drawn into an SVG string.
type Chart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// A chart over `x` × `y` on `root` with the report's margins, its axes titled
/// `x_desc` and `y_desc`, x ticks written by `x_fmt` (at most `x_ticks`), no minor
/// grid lines.
fn chart<'a, 'b>(
    root: &'a Area<'b>,
    (x, y): (std::ops::Range<f64>, std::ops::Range<f64>),
    (x_desc, y_desc): (&str, &str),
    x_fmt: &dyn Fn(&f64) -> String,
    x_ticks: usize,
) -> Result<Chart<'a, 'b>, String> {
    let mut chart = ChartBuilder::on(root)
        .margin(12)
        .x_label_area_size(42)
        .y_label_area_size(64)
        .build_cartesian_2d(x, y)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .x_labels(x_ticks)
        .x_label_formatter(x_fmt)
        .max_light_lines(0)
        .axis_desc_style((FONT, 14))
        .label_style((FONT, 12))
        .draw()
        .map_err(err)?;
    Ok(chart)
}

/// Decimal tick labels as [`super::number`] writes them.
fn decimal_label(x: &f64) -> String {
    super::number(*x)
}

/// The dev metric of every complete trial by trial number, the best so far, the
/// trial extended after a multi-fidelity search's brackets (`extended`: its number
/// and score), and the trials without a metric (pruned or failed) on the axis.
pub(super) fn history(
    trials: &[FrozenTrial],
    metric: &str,
    extended: Option<(u64, f64)>,
) -> String {
    let mut done: Vec<(f64, f64)> = trials
        .iter()
        .filter(|t| t.state == TrialState::Complete)
        .filter_map(|t| Some((t.number as f64, t.value()?)))
        .collect();
    let ext = extended.map(|(n, v)| (n as f64, v));
    done.extend(ext);
    done.sort_by(|a, b| a.0.total_cmp(&b.0));
    let Some(last) = trials.iter().map(|t| t.number).max() else {
        return "<p>No trials yet.</p>".into();
    };
    let (y0, y1) = span(done.iter().map(|p| p.1)).unwrap_or((0.0, 1.0));
    let n = last as f64;
    let failed: Vec<(f64, f64)> = trials
        .iter()
        .filter(|t| matches!(t.state, TrialState::Pruned | TrialState::Failed))
        .filter(|t| Some(t.number) != extended.map(|e| e.0))
        .map(|t| (t.number as f64, y0))
        .collect();
    let mut best = f64::NEG_INFINITY;
    let steps: Vec<(f64, f64)> = done
        .iter()
        .map(|&(x, y)| {
            best = best.max(y);
            (x, best)
        })
        .collect();
    let (place, y_range) = corner(
        done.iter().chain(&failed).copied().chain(along(&steps)),
        &(-0.5..n + 0.5),
        &(y0..y1),
    );
    let y_desc = format!("dev {metric}");
    svg(SIZE, |root| {
        let mut chart = chart(
            root,
            (-0.5..n + 0.5, y_range),
            ("trial number", &y_desc),
            &integer_label,
            (last as usize + 1).min(25),
        )?;
        chart
            .draw_series(LineSeries::new(
                steps.iter().copied(),
                CHOSEN.stroke_width(2),
            ))
            .map_err(err)?
            .label("best so far")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], CHOSEN.stroke_width(2)));
        chart
            .draw_series(
                done.iter()
                    .filter(|&&p| Some(p) != ext)
                    .map(|&p| Circle::new(p, 4, COMPLETE.filled())),
            )
            .map_err(err)?
            .label("complete trial")
            .legend(|(x, y)| Circle::new((x + 9, y), 4, COMPLETE.filled()));
        if let Some(p) = ext {
            chart
                .draw_series(std::iter::once(TriangleMarker::new(p, 7, CHOSEN.filled())))
                .map_err(err)?
                .label("trial extended after the brackets")
                .legend(|(x, y)| TriangleMarker::new((x + 9, y), 6, CHOSEN.filled()));
        }
        if !failed.is_empty() {
            chart
                .draw_series(
                    failed
                        .iter()
                        .map(|&p| Cross::new(p, 4, PRUNED.stroke_width(2))),
                )
                .map_err(err)?
                .label("pruned or failed (no dev metric)")
                .legend(|(x, y)| Cross::new((x + 9, y), 4, PRUNED.stroke_width(2)));
        }
        legend(&mut chart, place)
    })
}

/// A multi-fidelity trial's dev loss at each rung, by the rung's budget key (the
/// intermediate value's step). The journal holds minus the dev loss (the study
/// maximises) for every rung but the top one, whose value is the dev metric; its dev
/// loss is the last point of the trial's `outcome.curve` (one point per rung).
fn rung_losses(t: &FrozenTrial) -> Vec<(u64, f64)> {
    let curve: Vec<f64> = t
        .user_attrs
        .get("outcome")
        .and_then(|o| o.get("curve"))
        .and_then(serde_json::Value::as_array)
        .map(|c| {
            c.iter()
                .filter_map(|p| p.get(1).and_then(serde_json::Value::as_f64))
                .collect()
        })
        .unwrap_or_default();
    let n = t.intermediate.len();
    t.intermediate
        .iter()
        .enumerate()
        .filter_map(|(i, (&k, &v))| {
            if v < 0.0 {
                Some((k, -v))
            } else {
                // The top rung: the curve's point of the same rung.
                (curve.len() == n).then(|| (k, curve[i]))
            }
        })
        .collect()
}

/// One trial's curve: its number, whether it was pruned, and its points.
struct Curve {
    number: u64,
    pruned: bool,
    points: Vec<(f64, f64)>,
}

/// The dev loss of every trial at each of its rungs (multi-fidelity: by budget, on
/// a log axis) or evaluations, each curve named by its trial number at its end;
/// complete trials solid, pruned ones dashed, the chosen trial red.
pub(super) fn curves(trials: &[FrozenTrial], chosen: Option<u64>, multi_fidelity: bool) -> String {
    let curves: Vec<Curve> = trials
        .iter()
        .map(|t| Curve {
            number: t.number,
            pruned: t.state != TrialState::Complete,
            // Rungs by budget (their dev loss, [`rung_losses`]), or the minus dev
            // loss the journal holds at each evaluation.
            points: if multi_fidelity {
                rung_losses(t)
                    .into_iter()
                    .map(|(k, loss)| (k as f64 / 1000.0, loss))
                    .collect()
            } else {
                t.intermediate
                    .iter()
                    .map(|(&k, &v)| (k as f64, -v))
                    .collect()
            },
        })
        .filter(|c| !c.points.is_empty())
        .collect();
    let all = || curves.iter().flat_map(|c| c.points.iter().copied());
    let (Some((y0, y1)), Some((x0, x1))) = (span(all().map(|p| p.1)), span(all().map(|p| p.0)))
    else {
        return "<p>No dev loss reported yet.</p>".into();
    };
    let x_desc = if multi_fidelity {
        "training budget (budget units)"
    } else {
        "evaluation"
    };
    let draw_curves = |chart: &mut dyn FnMut(&Curve, ShapeStyle, Option<&str>) -> Drawn| -> Drawn {
        let mut labelled = [false; 3];
        for c in &curves {
            let (style, group) = if Some(c.number) == chosen {
                (CHOSEN.stroke_width(3), 2)
            } else if c.pruned {
                (PRUNED.stroke_width(1), 1)
            } else {
                (COMPLETE.stroke_width(2), 0)
            };
            let label = (!labelled[group])
                .then_some(["complete trial", "pruned trial", "chosen trial"][group]);
            labelled[group] = true;
            chart(c, style, label)?;
        }
        Ok(())
    };
    let (x_range, x_fmt): (_, &dyn Fn(&f64) -> String) = if multi_fidelity {
        (0.0..x1 * 1.08, &decimal_label)
    } else {
        (x0.min(0.0)..x1 + 0.6, &integer_label)
    };
    let lines: Vec<(f64, f64)> = curves.iter().flat_map(|c| along(&c.points)).collect();
    let (place, y_range) = corner(lines.iter().copied(), &x_range, &(y0..y1));
    svg(SIZE, |root| {
        let mut chart = chart(
            root,
            (x_range, y_range),
            (x_desc, "dev loss (lower is better)"),
            x_fmt,
            10,
        )?;
        draw_curves(&mut |c: &Curve, style: ShapeStyle, label: Option<&str>| {
            let series = if c.pruned && Some(c.number) != chosen {
                chart
                    .draw_series(DashedLineSeries::new(c.points.iter().copied(), 5, 4, style))
                    .map_err(err)?
            } else {
                chart
                    .draw_series(LineSeries::new(c.points.iter().copied(), style))
                    .map_err(err)?
            };
            if let Some(l) = label {
                series
                    .label(l)
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], style));
            }
            chart
                .draw_series(
                    c.points
                        .iter()
                        .map(|&p| Circle::new(p, 3, style.color.filled())),
                )
                .map_err(err)?;
            let &(x, y) = c.points.last().expect("non-empty");
            chart
                .draw_series(std::iter::once(Text::new(
                    c.number.to_string(),
                    (x, y),
                    TextStyle::from((FONT, 11).into_font())
                        .color(&BLACK.mix(0.7))
                        .pos(Pos::new(HPos::Left, VPos::Center)),
                )))
                .map_err(err)?;
            Ok(())
        })?;
        legend(&mut chart, place)
    })
}

/// Where `value` lies in `d`, from 0 to 1 (a log scale when the distribution has
/// one; a categorical choice by its index).
fn position(d: &Distribution, value: &ParamValue) -> Option<f64> {
    let lin = |v: f64, lo: f64, hi: f64, log: bool| {
        if hi <= lo {
            return 0.5;
        }
        if log && lo > 0.0 && v > 0.0 {
            (v.ln() - lo.ln()) / (hi.ln() - lo.ln())
        } else {
            (v - lo) / (hi - lo)
        }
    };
    match d {
        Distribution::Float { low, high, log, .. } => Some(lin(value.as_f64()?, *low, *high, *log)),
        Distribution::Int { low, high, log, .. } => {
            Some(lin(value.as_f64()?, *low as f64, *high as f64, *log))
        }
        Distribution::Categorical { choices } => {
            let i = choices.iter().position(|c| c == value)?;
            Some(if choices.len() > 1 {
                i as f64 / (choices.len() - 1) as f64
            } else {
                0.5
            })
        }
        _ => None,
    }
}

/// The ends of an axis of `d`, as labels.
fn ends(d: &Distribution) -> (String, String) {
    let f = |v: f64| super::number(v);
    match d {
        Distribution::Float { low, high, .. } => (f(*low), f(*high)),
        Distribution::Int { low, high, .. } => (low.to_string(), high.to_string()),
        Distribution::Categorical { choices } => (
            choices.first().map(super::value).unwrap_or_default(),
            choices.last().map(super::value).unwrap_or_default(),
        ),
        _ => (String::new(), String::new()),
    }
}

/// Parallel coordinates: one vertical axis per searched parameter (its range, log
/// scales marked), one line per trial; complete trials coloured by their dev metric
/// (dark: low, yellow: high), pruned ones grey.
pub(super) fn parallel(trials: &[FrozenTrial], params: &[(String, Distribution)]) -> String {
    if params.len() < 2 {
        return "<p>Fewer than two searched parameters.</p>".into();
    }
    let k = params.len();
    let line_of = |t: &FrozenTrial| -> Option<Vec<(f64, f64)>> {
        params
            .iter()
            .enumerate()
            .map(|(i, (name, d))| Some((i as f64, position(d, t.params.get(name)?)?)))
            .collect()
    };
    let values: Vec<f64> = trials
        .iter()
        .filter(|t| t.state == TrialState::Complete)
        .filter_map(FrozenTrial::value)
        .collect();
    let (v0, v1) = span(values.iter().copied()).unwrap_or((0.0, 1.0));
    svg((SIZE.0, 380), |root| {
        let mut chart = ChartBuilder::on(root)
            .margin(16)
            .margin_top(34)
            .margin_bottom(30)
            .build_cartesian_2d(-0.25..(k - 1) as f64 + 0.25, -0.24..1.02)
            .map_err(err)?;
        let mut labelled = [false; 2];
        for t in trials.iter().filter(|t| t.state != TrialState::Complete) {
            let Some(line) = line_of(t) else { continue };
            let s = chart
                .draw_series(LineSeries::new(line, PRUNED.mix(0.7).stroke_width(1)))
                .map_err(err)?;
            if !labelled[0] {
                s.label("pruned or failed trial").legend(|(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], PRUNED.stroke_width(2))
                });
                labelled[0] = true;
            }
        }
        for t in trials.iter().filter(|t| t.state == TrialState::Complete) {
            let (Some(line), Some(v)) = (line_of(t), t.value()) else {
                continue;
            };
            let c = ViridisRGB::get_color_normalized(v, v0, v1);
            let s = chart
                .draw_series(LineSeries::new(line, c.stroke_width(2)))
                .map_err(err)?;
            if !labelled[1] {
                s.label("complete trial (colour: dev metric, yellow highest)")
                    .legend(|(x, y)| {
                        PathElement::new(
                            vec![(x, y), (x + 18, y)],
                            ViridisRGB::get_color(0.8).stroke_width(2),
                        )
                    });
                labelled[1] = true;
            }
        }
        let style = |h: HPos, v: VPos, size: u32| {
            TextStyle::from((FONT, size).into_font()).pos(Pos::new(h, v))
        };
        for (i, (name, d)) in params.iter().enumerate() {
            let x = i as f64;
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(x, 0.0), (x, 1.0)],
                    BLACK.stroke_width(1),
                )))
                .map_err(err)?;
            let log = matches!(
                d,
                Distribution::Float { log: true, .. } | Distribution::Int { log: true, .. }
            );
            let (lo, hi) = ends(d);
            let title = if log {
                format!("{name} (log)")
            } else {
                name.clone()
            };
            chart
                .draw_series([
                    Text::new(title, (x, 1.02), style(HPos::Center, VPos::Bottom, 13)),
                    Text::new(hi, (x, 1.0), style(HPos::Left, VPos::Top, 11)),
                    Text::new(lo, (x, 0.0), style(HPos::Left, VPos::Bottom, 11)),
                ])
                .map_err(err)?;
        }
        legend(&mut chart, SeriesLabelPosition::LowerRight)
    })
}

/// Horizontal bars of the parameter importances.
pub(super) fn importances(imp: &[(String, f64)]) -> String {
    if imp.is_empty() {
        return "<p>Not enough complete trials to estimate importances.</p>".into();
    }
    let n = imp.len();
    let height = (60 + 30 * n as u32).max(140);
    svg((SIZE.0, height), |root| {
        // The names sit left of the bars, inside the chart (x < 0).
        let mut chart = ChartBuilder::on(root)
            .margin(12)
            .x_label_area_size(42)
            .y_label_area_size(28)
            .build_cartesian_2d(-0.42..1.0, -0.6..n as f64 - 0.4)
            .map_err(err)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(0)
            .x_desc("importance (share of the metric's variance)")
            .y_desc("searched parameter")
            .x_label_formatter(&|x: &f64| {
                if *x < -1e-9 {
                    String::new()
                } else {
                    format!("{x:.1}")
                }
            })
            .max_light_lines(0)
            .axis_desc_style((FONT, 14))
            .label_style((FONT, 12))
            .draw()
            .map_err(err)?;
        let rows = || {
            imp.iter()
                .rev()
                .enumerate()
                .map(|(i, (k, v))| (i as f64, k, v.clamp(0.0, 1.0)))
        };
        chart
            .draw_series(rows().map(|(y, _, v)| {
                Rectangle::new([(0.0, y - 0.32), (v, y + 0.32)], COMPLETE.filled())
            }))
            .map_err(err)?;
        let font = |h| TextStyle::from((FONT, 12).into_font()).pos(Pos::new(h, VPos::Center));
        chart
            .draw_series(rows().flat_map(|(y, k, v)| {
                [
                    Text::new(format!("{v:.3}"), (v + 0.01, y), font(HPos::Left)),
                    Text::new(k.clone(), (-0.02, y), font(HPos::Right)),
                ]
            }))
            .map_err(err)?;
        Ok(())
    })
}

/// A trial's times (Unix seconds) from its `clock` attribute.
struct Clock {
    start: f64,
    /// When each rung ended, by budget.
    rungs: Vec<(u64, f64)>,
    end: Option<f64>,
}

/// A trial's [`Clock`], when it recorded one.
fn clock(t: &FrozenTrial) -> Option<Clock> {
    let c = t.user_attrs.get(crate::search::CLOCK_ATTR)?;
    let start = c.get("start")?.as_f64()?;
    let mut rungs: Vec<(u64, f64)> = c
        .get("rungs")
        .and_then(|r| r.as_object())
        .map(|r| {
            r.iter()
                .filter_map(|(b, v)| Some((b.parse().ok()?, v.as_f64()?)))
                .collect()
        })
        .unwrap_or_default();
    rungs.sort_unstable_by_key(|r| r.0);
    Some(Clock {
        start,
        rungs,
        end: c.get("end").and_then(serde_json::Value::as_f64),
    })
}

/// The anytime curve: the dev metric of every full-length model (a complete trial,
/// the trial extended after the brackets: `extended` = its end as Unix seconds and
/// its score) at the time it was scored, and the incumbent's score against time
/// since the search started; with rungs (multi-fidelity), a second panel of every
/// rung's dev loss against time, a trial's rungs joined (promoted paths), the
/// chosen trial red.
/// A full-length model on the anytime curve: seconds since its search started, its
/// dev metric, whether it is the trial extended after the brackets.
pub(super) type Timed = (f64, f64, bool);

/// The full-length models of a search — each complete trial when it was scored, and
/// the trial extended after the brackets (`extended`: Unix seconds, score) — as
/// (seconds since the search's first trial started, score, extended?), in time
/// order, with that start; `None` without timings.
pub(super) fn full_length(
    trials: &[FrozenTrial],
    extended: Option<(f64, f64)>,
) -> Option<(f64, Vec<Timed>)> {
    let clocks: Vec<(&FrozenTrial, Clock)> =
        trials.iter().filter_map(|t| Some((t, clock(t)?))).collect();
    let t0 = clocks.iter().map(|(_, c)| c.start).reduce(f64::min)?;
    let mut full: Vec<Timed> = clocks
        .iter()
        .filter(|(t, _)| t.state == TrialState::Complete)
        .filter_map(|(t, c)| {
            let at = c.end.or(c.rungs.last().map(|r| r.1))?;
            Some((at - t0, t.value()?, false))
        })
        .collect();
    full.extend(extended.map(|(at, v)| (at - t0, v, true)));
    full.sort_by(|a, b| a.0.total_cmp(&b.0));
    Some((t0, full))
}

/// The incumbent's score over time as a step line up to `end`, from full-length
/// models in time order.
fn incumbent(full: &[Timed], end: f64) -> Vec<(f64, f64)> {
    let mut best = f64::NEG_INFINITY;
    let mut steps: Vec<(f64, f64)> = Vec::new();
    for &(x, y, _) in full {
        if y > best {
            if best.is_finite() {
                steps.push((x, best));
            }
            best = y;
            steps.push((x, y));
        }
    }
    if best.is_finite() {
        steps.push((end, best));
    }
    steps
}

/// The anytime curve: the dev metric of every full-length model ([`full_length`]) at
/// the time it was scored and the incumbent's against time since the search started,
/// with a `baseline` run's incumbent (its name and full-length models) beside it;
/// with rungs (multi-fidelity), a second panel of every rung's dev loss against
/// time, a trial's rungs joined (promoted paths), the chosen trial red.
pub(super) fn anytime(
    trials: &[FrozenTrial],
    metric: &str,
    extended: Option<(f64, f64)>,
    extension_loss: Option<(u64, f64, f64)>,
    chosen: Option<u64>,
    baseline: Option<(&str, &[Timed])>,
) -> String {
    let Some((t0, full)) = full_length(trials, extended) else {
        return "<p>No timings in this journal (it was written before trials recorded them).</p>"
            .into();
    };
    let clocks: Vec<(&FrozenTrial, Clock)> =
        trials.iter().filter_map(|t| Some((t, clock(t)?))).collect();
    let rung_points: Vec<(u64, Vec<(f64, f64)>)> = clocks
        .iter()
        .map(|(t, c)| {
            let losses = rung_losses(t);
            let mut pts: Vec<(f64, f64)> = c
                .rungs
                .iter()
                .filter_map(|(b, at)| {
                    let (_, loss) = losses.iter().find(|(k, _)| k == b)?;
                    Some((at - t0, *loss))
                })
                .collect();
            // The extension after the brackets continues its trial's path.
            if let Some((_, at, loss)) = extension_loss.filter(|e| e.0 == t.number) {
                pts.push((at - t0, loss));
            }
            (t.number, pts)
        })
        .filter(|(_, p): &(u64, Vec<(f64, f64)>)| !p.is_empty())
        .collect();
    let base = baseline.map_or(&[][..], |b| b.1);
    let end = full
        .iter()
        .chain(base)
        .map(|p| p.0)
        .chain(rung_points.iter().flat_map(|(_, p)| p.iter().map(|q| q.0)))
        .fold(1.0, f64::max);
    let mut out = String::new();
    if full.is_empty() {
        out += "<p>No full-length model scored yet.</p>";
    } else {
        let (y0, y1) = span(full.iter().chain(base).map(|p| p.1)).unwrap_or((0.0, 1.0));
        let y_desc = format!("dev {metric}");
        let steps = incumbent(&full, end * 1.04);
        let mut lines = along(&steps);
        if let Some((_, b)) = baseline {
            lines.extend(along(&incumbent(b, end * 1.04)));
        }
        let (place, y_range) = corner(
            full.iter()
                .chain(base)
                .map(|p| (p.0, p.1))
                .chain(lines.iter().copied()),
            &(0.0..end * 1.04),
            &(y0..y1),
        );
        out += &svg(SIZE, |root| {
            let mut chart = chart(
                root,
                (0.0..end * 1.04, y_range),
                ("seconds since the search started", &y_desc),
                &decimal_label,
                10,
            )?;
            if let Some((name, b)) = baseline.filter(|b| !b.1.is_empty()) {
                let style = PRUNED.stroke_width(2);
                chart
                    .draw_series(DashedLineSeries::new(incumbent(b, end * 1.04), 6, 4, style))
                    .map_err(err)?
                    .label(format!("incumbent of {name}"))
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], style));
            }
            chart
                .draw_series(LineSeries::new(
                    steps.iter().copied(),
                    CHOSEN.stroke_width(2),
                ))
                .map_err(err)?
                .label("incumbent (best so far)")
                .legend(|(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], CHOSEN.stroke_width(2))
                });
            chart
                .draw_series(
                    full.iter()
                        .filter(|p| !p.2)
                        .map(|p| Circle::new((p.0, p.1), 4, COMPLETE.filled())),
                )
                .map_err(err)?
                .label("full-length trial")
                .legend(|(x, y)| Circle::new((x + 9, y), 4, COMPLETE.filled()));
            if full.iter().any(|p| p.2) {
                chart
                    .draw_series(
                        full.iter()
                            .filter(|p| p.2)
                            .map(|p| TriangleMarker::new((p.0, p.1), 7, CHOSEN.filled())),
                    )
                    .map_err(err)?
                    .label("trial extended after the brackets")
                    .legend(|(x, y)| TriangleMarker::new((x + 9, y), 6, CHOSEN.filled()));
            }
            legend(&mut chart, place)
        });
    }
    if rung_points.is_empty() {
        return out;
    }
    let (y0, y1) =
        span(rung_points.iter().flat_map(|(_, p)| p.iter().map(|q| q.1))).unwrap_or((0.0, 1.0));
    let lines: Vec<(f64, f64)> = rung_points.iter().flat_map(|(_, p)| along(p)).collect();
    let (place, y_range) = corner(lines.iter().copied(), &(0.0..end * 1.04), &(y0..y1));
    out += &svg(SIZE, |root| {
        let mut chart = chart(
            root,
            (0.0..end * 1.04, y_range),
            (
                "seconds since the search started",
                "dev loss at the rung (lower is better)",
            ),
            &decimal_label,
            10,
        )?;
        let mut labelled = [false; 3];
        for (number, pts) in &rung_points {
            let promoted = pts.len() > 1;
            let (style, group) = if Some(*number) == chosen {
                (CHOSEN.stroke_width(3), 2)
            } else if promoted {
                (COMPLETE.stroke_width(2), 1)
            } else {
                (PRUNED.stroke_width(1), 0)
            };
            chart
                .draw_series(pts.iter().map(|&p| Circle::new(p, 3, style.color.filled())))
                .map_err(err)?;
            let s = chart
                .draw_series(LineSeries::new(pts.iter().copied(), style))
                .map_err(err)?;
            if !labelled[group] {
                let label = [
                    "rung of a trial stopped there",
                    "rungs of a promoted trial",
                    "chosen trial",
                ][group];
                s.label(label)
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], style));
                labelled[group] = true;
            }
        }
        legend(&mut chart, place)
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn importance_bars_are_named_and_labelled() {
        let svg = importances(&[("lr".into(), 0.7), ("layers".into(), 0.3)]);
        let texts: Vec<&str> = svg
            .split("<text")
            .skip(1)
            .map(|t| t[t.find('>').unwrap() + 1..t.find("</text>").unwrap()].trim())
            .collect();
        for t in [
            "lr",
            "layers",
            "0.700",
            "importance (share of the metric&apos;s variance)",
            "searched parameter",
        ] {
            assert!(texts.contains(&t), "{t}: {texts:?}");
        }
        assert!(importances(&[]).starts_with("<p>"));
    }

    #[test]
    fn a_top_rung_keeps_its_dev_loss() {
        // The top rung's intermediate value is the dev metric; its dev loss is the
        // outcome curve's point of that rung. Without a curve it is left out.
        let mut t = FrozenTrial {
            number: 8,
            state: TrialState::Complete,
            params: Default::default(),
            distributions: Default::default(),
            values: Some(vec![0.74]),
            intermediate: [(170, -1.46), (510, -1.24), (1530, 0.74)].into(),
            user_attrs: Default::default(),
            constraints: None,
        };
        assert_eq!(rung_losses(&t), vec![(170, 1.46), (510, 1.24)]);
        t.user_attrs.insert(
            "outcome".into(),
            serde_json::json!({"curve": [[787, 1.46], [2359, 1.24], [7076, 1.15]]}),
        );
        assert_eq!(
            rung_losses(&t),
            vec![(170, 1.46), (510, 1.24), (1530, 1.15)]
        );
    }

    #[test]
    fn the_legend_goes_where_it_hides_least() {
        let (x, y) = (0.0..10.0, 0.0..1.0);
        // Points low on the right: the legend goes up.
        let low_right = [(9.0, 0.1), (8.0, 0.2), (9.5, 0.05)];
        assert!(matches!(
            corner(low_right.iter().copied(), &x, &y),
            (SeriesLabelPosition::UpperRight, ref r) if *r == y
        ));
        // Both right corners taken: the upper left.
        let right = [(9.0, 0.1), (9.0, 0.9)];
        assert!(matches!(
            corner(right.iter().copied(), &x, &y),
            (SeriesLabelPosition::UpperLeft, _)
        ));
        assert!(matches!(
            corner(std::iter::empty(), &x, &y),
            (SeriesLabelPosition::LowerRight, _)
        ));
        // Every corner taken: an empty band above the data.
        let all = [(0.0, 0.0), (10.0, 0.0), (0.0, 1.0), (10.0, 1.0)];
        let (pos, r) = corner(all.iter().copied(), &x, &y);
        assert!(matches!(pos, SeriesLabelPosition::UpperRight));
        assert!((r.end - 1.45).abs() < 1e-12 && r.start == 0.0);
    }

    #[test]
    fn trial_axes_label_integers_only() {
        assert_eq!(integer_label(&3.0), "3");
        assert_eq!(integer_label(&2.5), "");
        assert_eq!(span([1.0, 1.0].into_iter()), Some((0.95, 1.05)));
        assert_eq!(span(std::iter::empty()), None);
    }
}
