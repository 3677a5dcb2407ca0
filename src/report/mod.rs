//! The balance report: one self-contained HTML file with inline SVG charts (balance history
//! per channel, local/remote distribution, fees earned) and the alerts.
//!
//! Pure: data in, HTML text out. No JavaScript, no external fonts, styles or scripts, so the
//! file opens anywhere, offline, and can be mailed or archived as is. The plugin feeds it
//! from the monitor's store; the simulator can feed it from a simulated run.

use crate::engine::monitor::{Alert, BalanceTotals, ChannelSnapshot, FeeWindow, HistoryPoint, IncomeWindow};
use crate::node::{Forward, ForwardStatus};
use crate::types::{Msat, Scid};
use plotters::prelude::*;
use std::collections::BTreeMap;
use std::fmt::Write;

/// Channels beyond this many (smallest capacity first) are listed but not charted, so a
/// large node's report stays a few megabytes.
pub(crate) const MAX_CHARTED_CHANNELS: usize = 100;
/// Channels in the local/remote bar chart (largest capacity first).
const MAX_BARS: usize = 40;
const DAY: u64 = 86_400;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("drawing chart '{chart}': {reason}")]
    Chart { chart: String, reason: String },
}

/// Everything a report shows.
#[derive(Debug, Clone, Default)]
pub(crate) struct ReportData {
    /// Unix seconds.
    pub generated_at: u64,
    pub node_id: Option<String>,
    pub network: String,
    /// The latest snapshot of every channel.
    pub channels: Vec<ChannelSnapshot>,
    /// Balance history to chart, per channel, in time order (one tier).
    pub history: BTreeMap<Scid, Vec<HistoryPoint>>,
    /// How many days of history the charts cover (for the caption; 0 to leave it out).
    pub charted_days: u64,
    pub totals: BalanceTotals,
    /// Active alerts first, then recent cleared ones.
    pub alerts: Vec<Alert>,
    pub fees: Vec<FeeWindow>,
    pub income: Vec<IncomeWindow>,
    /// Fees earned per day: (day start, unix seconds; fees), oldest first.
    pub daily_fees: Vec<(u64, Msat)>,
}

/// Fees of settled forwards per UTC day over the `days` days ending with `now`'s day,
/// oldest first, days without forwards included as zero.
pub(crate) fn daily_fees(forwards: &[Forward], now: u64, days: u64) -> Vec<(u64, Msat)> {
    let today = now - now % DAY;
    let first = today.saturating_sub(days.saturating_sub(1) * DAY);
    let mut out: Vec<(u64, Msat)> = (0..days)
        .map(|i| first + i * DAY)
        .take_while(|d| *d <= today)
        .map(|d| (d, Msat::ZERO))
        .collect();
    for f in forwards.iter().filter(|f| f.status == ForwardStatus::Settled) {
        let at = f.resolved_time.unwrap_or(f.received_time);
        // NaN and negative times fail this test and are skipped.
        if !(at >= first as f64 && at < (today + DAY) as f64) {
            continue;
        }
        let idx = ((at as u64 - first) / DAY) as usize;
        if let Some(slot) = out.get_mut(idx) {
            slot.1 = Msat(slot.1 .0.saturating_add(f.fee.unwrap_or_default().0));
        }
    }
    out
}

/// Renders the report.
pub(crate) fn render(d: &ReportData) -> Result<String, ReportError> {
    render_with(d, None, &[])
}

/// An extra section for [`render_with`]: a heading and its HTML body (already escaped).
#[derive(Debug, Clone, Default)]
pub(crate) struct Section {
    pub title: String,
    pub html: String,
}

/// Renders the report with a custom title and extra sections after the summary (the
/// simulator adds its own figures and charts this way).
pub(crate) fn render_with(
    d: &ReportData,
    title: Option<&str>,
    extra: &[Section],
) -> Result<String, ReportError> {
    let mut h = String::with_capacity(64 * 1024);
    let title = match (title, &d.node_id) {
        (Some(t), _) => t.to_string(),
        (None, Some(id)) => format!("ballast report: node {}…", &id[..id.len().min(16)]),
        (None, None) => "ballast report".to_string(),
    };
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>{}</h1>\n<p class=\"meta\">Generated {} UTC · network {} · {} channel(s)</p>\n",
        esc(&title),
        esc(&title),
        esc(&datetime(d.generated_at)),
        esc(&d.network),
        d.channels.len()
    );
    summary(&mut h, d);
    for sec in extra {
        let _ = writeln!(h, "<h2>{}</h2>", esc(&sec.title));
        h.push_str(&sec.html);
        h.push('\n');
    }
    fees_section(&mut h, d)?;
    distribution_section(&mut h, d)?;
    alerts_section(&mut h, d);
    history_section(&mut h, d)?;
    h.push_str("</body>\n</html>\n");
    Ok(h)
}

const STYLE: &str = "body{font-family:sans-serif;margin:2em;color:#222;max-width:1100px}\
table{border-collapse:collapse;margin:.5em 0 1.5em}th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}\
th{background:#f2f2f2}td.l,th.l{text-align:left}.meta{color:#666}.critical{color:#b00020;font-weight:bold}\
.warning{color:#a66300}.info{color:#2455a4}svg{display:block;margin:.5em 0}";

fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn sat(m: Msat) -> String {
    // Thousands separators make balances readable at a glance.
    let s = (m.0 / 1000).to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn pct(r: Option<f64>) -> String {
    r.map(|r| format!("{:.1}%", r * 100.0))
        .unwrap_or_else(|| "–".into())
}

/// Unix seconds as `YYYY-MM-DD HH:MM` (UTC), without a date library.
pub(crate) fn datetime(t: u64) -> String {
    let (y, m, d) = civil(t / DAY);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}",
        t % DAY / 3_600,
        t % 3_600 / 60
    )
}

fn date(t: u64) -> String {
    let (_, m, d) = civil(t / DAY);
    format!("{m:02}-{d:02}")
}

/// Days since 1970-01-01 to (year, month, day), after Howard Hinnant's `civil_from_days`.
fn civil(days: u64) -> (i64, u32, u32) {
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn summary(h: &mut String, d: &ReportData) {
    let t = &d.totals;
    let active = d.alerts.iter().filter(|a| a.is_active()).count();
    let _ = write!(
        h,
        "<h2>Summary</h2>\n<table>\n<tr><th class=\"l\"></th><th>total (sat)</th><th>average per channel (sat)</th></tr>\n\
<tr><td class=\"l\">capacity</td><td>{}</td><td>{}</td></tr>\n\
<tr><td class=\"l\">local</td><td>{}</td><td>{}</td></tr>\n\
<tr><td class=\"l\">remote</td><td>{}</td><td>{}</td></tr>\n\
<tr><td class=\"l\">spendable</td><td>{}</td><td></td></tr>\n\
<tr><td class=\"l\">receivable</td><td>{}</td><td></td></tr>\n</table>\n\
<p>{} open channel(s), local share {}, {} active alert(s).</p>\n",
        sat(t.capacity),
        sat(t.avg_capacity),
        sat(t.local),
        sat(t.avg_local),
        sat(t.remote),
        sat(t.avg_remote),
        sat(t.spendable),
        sat(t.receivable),
        t.channels,
        pct(t.local_ratio),
        active
    );
}

fn chart_err(chart: &str) -> impl Fn(String) -> ReportError + '_ {
    move |reason| ReportError::Chart {
        chart: chart.to_string(),
        reason,
    }
}

/// Runs `draw` on an SVG canvas and returns the `<svg>` element.
fn svg(
    name: &str,
    size: (u32, u32),
    draw: impl FnOnce(&DrawingArea<SVGBackend<'_>, plotters::coord::Shift>) -> Result<(), String>,
) -> Result<String, ReportError> {
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, size).into_drawing_area();
        root.fill(&WHITE)
            .map_err(|e| e.to_string())
            .map_err(chart_err(name))?;
        draw(&root).map_err(chart_err(name))?;
        root.present()
            .map_err(|e| e.to_string())
            .map_err(chart_err(name))?;
    }
    // Inline SVG in HTML takes no XML declaration.
    let start = buf.find("<svg").unwrap_or(0);
    Ok(buf[start..].to_string())
}

/// Escapes text for HTML (for callers building [`Section`]s).
pub fn escape(s: &str) -> String {
    esc(s)
}

/// Axis labels for unix-second x values over a span of `span` seconds.
fn time_label(t: f64, span: u64) -> String {
    let t = t.max(0.0) as u64;
    if span > 7 * DAY {
        date(t)
    } else if span > DAY {
        datetime(t)[5..].to_string()
    } else {
        datetime(t)[11..].to_string()
    }
}

/// One named line of a [`line_chart`]: (unix seconds, value) points in time order.
#[derive(Debug, Clone, Default)]
pub(crate) struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// A time-series line chart with a legend. With `steps`, each value holds until the next
/// point (fees, which change at discrete times), drawn to `x_end`.
pub(crate) fn line_chart(
    name: &str,
    caption: &str,
    y_desc: &str,
    series: &[Series],
    x_end: f64,
    steps: bool,
) -> Result<String, ReportError> {
    let pts = || series.iter().flat_map(|s| s.points.iter());
    let x0 = pts().map(|p| p.0).fold(f64::INFINITY, f64::min);
    let x0 = if x0.is_finite() { x0 } else { 0.0 };
    let x1 = pts().map(|p| p.0).fold(x_end, f64::max).max(x0 + 1.0);
    let y1 = pts().map(|p| p.1).fold(0.0, f64::max).max(1.0) * 1.1;
    let y0 = pts().map(|p| p.1).fold(0.0, f64::min);
    let span = (x1 - x0) as u64;
    let lines: Vec<(String, Vec<(f64, f64)>)> = series
        .iter()
        .map(|s| {
            let mut v: Vec<(f64, f64)> = Vec::with_capacity(s.points.len() * 2 + 1);
            for (i, p) in s.points.iter().enumerate() {
                if steps && i > 0 {
                    v.push((p.0, s.points[i - 1].1));
                }
                v.push(*p);
            }
            if steps {
                if let Some(last) = s.points.last() {
                    v.push((x1, last.1));
                }
            }
            (s.name.clone(), v)
        })
        .collect();
    svg(name, (1000, 340), |root| {
        let mut c = ChartBuilder::on(root)
            .caption(caption, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(70)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(|e| e.to_string())?;
        c.configure_mesh()
            .x_labels(8)
            .x_label_formatter(&|x| time_label(*x, span))
            .y_desc(y_desc)
            .light_line_style(RGBColor(245, 245, 245))
            .label_style(("sans-serif", 13))
            .draw()
            .map_err(|e| e.to_string())?;
        for (i, (label, v)) in lines.into_iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            c.draw_series(LineSeries::new(v, color.stroke_width(2)))
                .map_err(|e| e.to_string())?
                .label(label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
        }
        c.configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(200, 200, 200))
            .label_font(("sans-serif", 12))
            .position(SeriesLabelPosition::UpperLeft)
            .draw()
            .map_err(|e| e.to_string())?;
        Ok(())
    })
}

/// A timeline: one row per label, a bar from start to end (unix seconds) per span, coloured
/// by severity. `spans` are (row, start, end, severity).
pub(crate) fn timeline_chart(
    name: &str,
    caption: &str,
    rows: &[String],
    spans: &[(usize, u64, u64, crate::engine::monitor::Severity)],
    x_start: u64,
    x_end: u64,
) -> Result<String, ReportError> {
    use crate::engine::monitor::Severity;
    let (x0, x1) = (x_start as f64, (x_end.max(x_start + 1)) as f64);
    let n = rows.len().max(1) as u32;
    let span = x_end.saturating_sub(x_start);
    let labels = rows.to_vec();
    let height = (70 + 24 * n).clamp(160, 2400);
    svg(name, (1000, height), |root| {
        let mut c = ChartBuilder::on(root)
            .caption(caption, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(240)
            .build_cartesian_2d(x0..x1, (0u32..n).into_segmented())
            .map_err(|e| e.to_string())?;
        c.configure_mesh()
            .x_labels(8)
            .y_labels(n as usize + 1)
            .disable_y_mesh()
            .x_label_formatter(&|x| time_label(*x, span))
            .y_label_formatter(&|y| match y {
                SegmentValue::CenterOf(i) => labels.get(*i as usize).cloned().unwrap_or_default(),
                _ => String::new(),
            })
            .light_line_style(RGBColor(245, 245, 245))
            .label_style(("sans-serif", 12))
            .draw()
            .map_err(|e| e.to_string())?;
        c.draw_series(spans.iter().map(|&(row, a, b, sev)| {
            let color = match sev {
                Severity::Critical => RGBColor(176, 0, 32),
                Severity::Warning => RGBColor(214, 140, 0),
                _ => RGBColor(36, 85, 164),
            };
            let (a, b) = (a as f64, (b.max(a + 300)) as f64);
            let row = row as u32;
            Rectangle::new(
                [(a, SegmentValue::Exact(row)), (b, SegmentValue::Exact(row + 1))],
                color.filled(),
            )
        }))
        .map_err(|e| e.to_string())?;
        Ok(())
    })
}

fn fees_section(h: &mut String, d: &ReportData) -> Result<(), ReportError> {
    h.push_str("<h2>Fees earned</h2>\n");
    h.push_str("<table>\n<tr><th class=\"l\">window</th><th>forwards</th><th>fees (sat)</th><th>fees (msat)</th><th>forwarded (sat)</th></tr>\n");
    for w in &d.fees {
        let _ = writeln!(
            h,
            "<tr><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&w.window),
            w.forwards,
            sat(w.fees),
            w.fees.0,
            sat(w.forwarded)
        );
    }
    h.push_str("</table>\n");
    if !d.income.is_empty() {
        h.push_str(
            "<table>\n<tr><th class=\"l\">window</th><th>invoices paid</th><th>received (sat)</th></tr>\n",
        );
        for w in &d.income {
            let _ = writeln!(
                h,
                "<tr><td class=\"l\">{}</td><td>{}</td><td>{}</td></tr>",
                esc(&w.window),
                w.invoices,
                sat(w.received)
            );
        }
        h.push_str("</table>\n");
    }
    if d.daily_fees.is_empty() {
        return Ok(());
    }
    let days = d.daily_fees.clone();
    let max = days.iter().map(|(_, f)| f.0).max().unwrap_or(0).max(1) as f64 / 1000.0;
    let chart = svg("fees per day", (1000, 300), |root| {
        let n = days.len() as u32;
        let mut c = ChartBuilder::on(root)
            .caption("Fees earned per day (sat)", ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(70)
            .build_cartesian_2d((0u32..n.saturating_sub(1)).into_segmented(), 0f64..max * 1.1)
            .map_err(|e| e.to_string())?;
        let labels = days.clone();
        c.configure_mesh()
            .disable_x_mesh()
            .x_labels(10)
            .x_label_formatter(&|x| match x {
                SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => {
                    labels.get(*i as usize).map(|(t, _)| date(*t)).unwrap_or_default()
                }
                SegmentValue::Last => String::new(),
            })
            .y_desc("sat")
            .light_line_style(RGBColor(245, 245, 245))
            .label_style(("sans-serif", 13))
            .draw()
            .map_err(|e| e.to_string())?;
        c.draw_series(
            Histogram::vertical(&c)
                .style(RGBColor(36, 85, 164).filled())
                .margin(2)
                .data(
                    days.iter()
                        .enumerate()
                        .map(|(i, (_, f))| (i as u32, f.0 as f64 / 1000.0)),
                ),
        )
        .map_err(|e| e.to_string())?;
        Ok(())
    })?;
    h.push_str(&chart);
    h.push('\n');
    Ok(())
}

fn open(s: &ChannelSnapshot) -> bool {
    s.state != crate::node::ChannelState::Closed
}

fn distribution_section(h: &mut String, d: &ReportData) -> Result<(), ReportError> {
    h.push_str("<h2>Local/remote distribution</h2>\n");
    let chans: Vec<&ChannelSnapshot> = d.channels.iter().filter(|s| open(s)).collect();
    if chans.is_empty() {
        h.push_str("<p>No open channels.</p>\n");
        return Ok(());
    }
    // Histogram: how many channels have each local share, in 10% bins.
    let mut bins = [0u32; 10];
    for s in &chans {
        if let Some(r) = s.local_ratio() {
            bins[((r * 10.0) as usize).min(9)] += 1;
        }
    }
    let top = *bins.iter().max().unwrap_or(&1);
    let hist = svg("local share histogram", (1000, 280), |root| {
        let mut c = ChartBuilder::on(root)
            .caption("Channels by local share of capacity", ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(50)
            .build_cartesian_2d((0u32..9u32).into_segmented(), 0u32..top + 1)
            .map_err(|e| e.to_string())?;
        c.configure_mesh()
            .disable_x_mesh()
            .x_labels(10)
            .x_label_formatter(&|x| match x {
                SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => format!("{}–{}%", i * 10, i * 10 + 10),
                SegmentValue::Last => String::new(),
            })
            .y_desc("channels")
            .light_line_style(RGBColor(245, 245, 245))
            .label_style(("sans-serif", 13))
            .draw()
            .map_err(|e| e.to_string())?;
        c.draw_series(
            Histogram::vertical(&c)
                .style(RGBColor(46, 139, 87).filled())
                .margin(4)
                .data(bins.iter().enumerate().map(|(i, n)| (i as u32, *n))),
        )
        .map_err(|e| e.to_string())?;
        Ok(())
    })?;
    h.push_str(&hist);
    h.push('\n');

    // Stacked bars: local (green) and remote (grey) per channel, largest first.
    let mut big: Vec<&ChannelSnapshot> = chans.clone();
    big.sort_by(|a, b| b.capacity.cmp(&a.capacity).then(a.key.cmp(&b.key)));
    big.truncate(MAX_BARS);
    let rows = big.len() as u32;
    let max_cap = big.iter().map(|s| s.capacity.0).max().unwrap_or(1).max(1) as f64 / 1000.0;
    let names: Vec<String> = big.iter().map(|s| s.key.to_string()).collect();
    let bars = svg("local/remote bars", (1000, 90 + 26 * rows.max(1)), |root| {
        let mut c = ChartBuilder::on(root)
            .caption(
                "Local (green) and remote (grey) balance per channel, sat",
                ("sans-serif", 16),
            )
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(170)
            .build_cartesian_2d(
                0f64..max_cap * 1.02,
                (0u32..rows.saturating_sub(1)).into_segmented(),
            )
            .map_err(|e| e.to_string())?;
        c.configure_mesh()
            .disable_y_mesh()
            .y_labels(rows as usize)
            .y_label_formatter(&|y| match y {
                SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => {
                    let i = *i as usize;
                    names
                        .len()
                        .checked_sub(i + 1)
                        .map(|j| names[j].clone())
                        .unwrap_or_default()
                }
                SegmentValue::Last => String::new(),
            })
            .x_label_formatter(&|x| sat(Msat((x * 1000.0) as u64)))
            .light_line_style(RGBColor(245, 245, 245))
            .label_style(("sans-serif", 13))
            .draw()
            .map_err(|e| e.to_string())?;
        let green = RGBColor(46, 139, 87).filled();
        let grey = RGBColor(190, 190, 190).filled();
        let row = |i: usize| (SegmentValue::Exact(i as u32), SegmentValue::Exact(i as u32 + 1));
        let shapes = big.iter().enumerate().flat_map(|(i, s)| {
            let (l, r) = (s.local.0 as f64 / 1000.0, s.remote.0 as f64 / 1000.0);
            // Largest at the top.
            let (lo, hi) = row(big.len() - 1 - i);
            [
                Rectangle::new([(0.0, lo.clone()), (l, hi.clone())], green),
                Rectangle::new([(l, lo.clone()), (l + r, hi.clone())], grey),
                // A white outline keeps neighbouring rows apart.
                Rectangle::new([(0.0, lo), (l + r, hi)], WHITE.stroke_width(3)),
            ]
        });
        c.draw_series(shapes).map_err(|e| e.to_string())?;
        Ok(())
    })?;
    h.push_str(&bars);
    h.push('\n');
    if chans.len() > MAX_BARS {
        let _ = writeln!(
            h,
            "<p class=\"meta\">{} smaller channel(s) not shown in the bar chart.</p>",
            chans.len() - MAX_BARS
        );
    }

    h.push_str("<table>\n<tr><th class=\"l\">channel</th><th class=\"l\">peer</th><th class=\"l\">state</th><th>capacity (sat)</th><th>local (sat)</th><th>remote (sat)</th><th>local share</th><th>HTLCs in/out</th><th class=\"l\">peer connected</th></tr>\n");
    let mut all: Vec<&ChannelSnapshot> = d.channels.iter().collect();
    all.sort_by(|a, b| b.capacity.cmp(&a.capacity).then(a.key.cmp(&b.key)));
    for s in all {
        let _ = writeln!(
            h,
            "<tr><td class=\"l\">{}</td><td class=\"l\">{}…</td><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}/{}</td><td class=\"l\">{}</td></tr>",
            esc(&s.key.to_string()),
            esc(&s.peer.to_hex()[..16]),
            esc(&serde_json::to_value(s.state).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default()),
            sat(s.capacity),
            sat(s.local),
            sat(s.remote),
            pct(s.local_ratio()),
            s.htlcs_in,
            s.htlcs_out,
            if s.peer_connected { "yes" } else { "no" }
        );
    }
    h.push_str("</table>\n");
    Ok(())
}

fn alerts_section(h: &mut String, d: &ReportData) {
    h.push_str("<h2>Alerts</h2>\n");
    if d.alerts.is_empty() {
        h.push_str("<p>No alerts.</p>\n");
        return;
    }
    h.push_str("<table>\n<tr><th>id</th><th class=\"l\">state</th><th class=\"l\">severity</th><th class=\"l\">type</th><th class=\"l\">channel</th><th class=\"l\">first seen</th><th class=\"l\">last seen</th><th>count</th><th class=\"l\">message</th></tr>\n");
    for a in &d.alerts {
        let state = match (a.is_active(), a.is_acknowledged()) {
            (true, true) => "active (acknowledged)",
            (true, false) => "active",
            (false, _) => "cleared",
        };
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td class=\"l\">{}</td><td class=\"l {}\">{}</td><td class=\"l\">{}</td><td class=\"l\">{}</td><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{}</td><td class=\"l\">{}</td></tr>",
            a.id,
            state,
            a.severity.as_str(),
            a.severity.as_str(),
            esc(a.kind.as_str()),
            esc(&a.channel.to_string()),
            esc(&datetime(a.first_seen)),
            esc(&datetime(a.last_seen)),
            a.count,
            esc(&a.message)
        );
    }
    h.push_str("</table>\n");
}

fn history_section(h: &mut String, d: &ReportData) -> Result<(), ReportError> {
    h.push_str("<h2>Balance history</h2>\n");
    let mut charted: Vec<(&Scid, &Vec<HistoryPoint>)> =
        d.history.iter().filter(|(_, p)| !p.is_empty()).collect();
    if charted.is_empty() {
        h.push_str("<p>No history yet: it starts with the first snapshot of a confirmed channel.</p>\n");
        return Ok(());
    }
    let capacity = |pts: &[HistoryPoint]| pts.last().map(|p| p.capacity.0).unwrap_or(0);
    charted.sort_by(|a, b| capacity(b.1).cmp(&capacity(a.1)).then(a.0.cmp(b.0)));
    let skipped = charted.len().saturating_sub(MAX_CHARTED_CHANNELS);
    charted.truncate(MAX_CHARTED_CHANNELS);
    let span = match d.charted_days {
        0 => String::new(),
        n => format!(" over the last {n} day(s)"),
    };
    let _ = writeln!(
        h,
        "<p class=\"meta\">Local balance as a share of capacity{span}: average per bucket (line) with the bucket's minimum and maximum (thin lines).</p>"
    );
    for (scid, pts) in charted {
        let _ = writeln!(h, "<h3>{}</h3>", esc(&scid.to_string()));
        let first = pts.first().map(|p| p.start).unwrap_or(0);
        let last = pts
            .last()
            .map(|p| p.start + u64::from(p.bucket_secs))
            .unwrap_or(first + 1);
        let (x0, x1) = (first as f64, (last.max(first + 1)) as f64);
        let share = |m: Msat, cap: Msat| {
            if cap.0 == 0 {
                0.0
            } else {
                (m.0 as f64 / cap.0 as f64 * 100.0).clamp(0.0, 100.0)
            }
        };
        let series = |f: fn(&HistoryPoint) -> Msat| -> Vec<(f64, f64)> {
            pts.iter()
                .map(|p| {
                    (
                        (p.start + u64::from(p.bucket_secs) / 2) as f64,
                        share(f(p), p.capacity),
                    )
                })
                .collect()
        };
        let (avg, min, max) = (
            series(|p| p.local_avg),
            series(|p| p.local_min),
            series(|p| p.local_max),
        );
        let span = last - first;
        let chart = svg(&format!("history {scid}"), (1000, 260), |root| {
            let mut c = ChartBuilder::on(root)
                .margin(10)
                .x_label_area_size(30)
                .y_label_area_size(50)
                .build_cartesian_2d(x0..x1, 0f64..100f64)
                .map_err(|e| e.to_string())?;
            c.configure_mesh()
                .x_labels(8)
                .x_label_formatter(&|x| {
                    let t = x.max(0.0) as u64;
                    if span > 7 * DAY {
                        date(t)
                    } else if span > DAY {
                        datetime(t)[5..].to_string()
                    } else {
                        datetime(t)[11..].to_string()
                    }
                })
                .y_desc("local %")
                .light_line_style(RGBColor(245, 245, 245))
                .label_style(("sans-serif", 13))
                .draw()
                .map_err(|e| e.to_string())?;
            let thin = RGBColor(150, 180, 220);
            c.draw_series(LineSeries::new(min, thin.stroke_width(1)))
                .map_err(|e| e.to_string())?;
            c.draw_series(LineSeries::new(max, thin.stroke_width(1)))
                .map_err(|e| e.to_string())?;
            c.draw_series(LineSeries::new(avg, RGBColor(36, 85, 164).stroke_width(2)))
                .map_err(|e| e.to_string())?;
            Ok(())
        })?;
        h.push_str(&chart);
        h.push('\n');
    }
    if skipped > 0 {
        let _ = writeln!(
            h,
            "<p class=\"meta\">{skipped} smaller channel(s) not charted.</p>"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::monitor::{balance_totals, AlertId, AlertKind, AlertState, ChannelKey, Severity};
    use crate::node::{Channel, ChannelState};
    use crate::types::NodeId;

    const T0: u64 = 1_700_000_000 - 1_700_000_000 % DAY;

    fn snap(n: u32, cap: u64, local: u64) -> ChannelSnapshot {
        let ch = Channel {
            scid: Scid::new(800_000 + n, 1, 0),
            peer: NodeId([2; 33]),
            peer_connected: n.is_multiple_of(2),
            state: ChannelState::Normal,
            raw_state: "CHANNELD_NORMAL".into(),
            capacity: Msat(cap),
            local: Msat(local),
            remote: Msat(cap - local),
            spendable: Msat(local),
            receivable: Msat(cap - local),
            htlcs: vec![],
            fee_base: Msat(0),
            fee_ppm: 0,
            remote_policy: None,
            private: false,
        };
        ChannelSnapshot::from_channel(&ch, 1, T0)
    }

    /// Counts `<name` openings (not `<name-…`) and `</name>` closings.
    fn balanced(html: &str, name: &str) -> bool {
        let opens = html
            .match_indices(&format!("<{name}"))
            .filter(|(i, _)| {
                let next = html[i + name.len() + 1..].chars().next();
                matches!(next, Some(' ' | '>' | '\n'))
            })
            .count();
        let closes = html.matches(&format!("</{name}>")).count();
        opens == closes && opens > 0
    }

    fn data() -> ReportData {
        let channels = vec![
            snap(1, 5_000_000_000, 100_000_000),
            snap(2, 2_000_000_000, 1_500_000_000),
        ];
        let mut history = BTreeMap::new();
        let scid = channels[0].scid().unwrap();
        history.insert(
            scid,
            (0..48u64)
                .map(|i| HistoryPoint {
                    scid,
                    bucket_secs: 3_600,
                    start: T0 + i * 3_600,
                    samples: 12,
                    local_avg: Msat(1_000_000_000 + i * 10_000_000),
                    local_min: Msat(900_000_000),
                    local_max: Msat(2_000_000_000),
                    capacity: Msat(5_000_000_000),
                })
                .collect(),
        );
        let alert = Alert {
            id: AlertId(7),
            kind: AlertKind::LowLocal,
            severity: Severity::Warning,
            channel: ChannelKey::Scid(scid),
            peer: NodeId([2; 33]),
            message: "local <b>low</b> & \"drained\"".into(),
            first_seen: T0,
            last_seen: T0 + 60,
            count: 2,
            state: AlertState::Active,
            cleared_at: None,
            acknowledged_at: None,
        };
        let mut fwd = Forward {
            in_channel: scid,
            out_channel: None,
            in_msat: Msat(1_000),
            out_msat: None,
            fee: Some(Msat(2_500)),
            status: ForwardStatus::Settled,
            received_time: (T0 + DAY + 5) as f64,
            resolved_time: Some((T0 + DAY + 6) as f64),
        };
        let mut forwards = vec![fwd.clone()];
        fwd.status = ForwardStatus::Failed;
        forwards.push(fwd);
        ReportData {
            generated_at: T0 + 2 * DAY,
            charted_days: 2,
            node_id: Some("02".repeat(33)),
            network: "regtest".into(),
            totals: balance_totals(&channels),
            channels,
            history,
            alerts: vec![alert],
            fees: crate::engine::monitor::fee_income(&forwards, T0 + 2 * DAY),
            income: crate::engine::monitor::invoice_income(&[(Msat(5_000), T0)], T0 + 2 * DAY),
            daily_fees: daily_fees(&forwards, T0 + 2 * DAY, 30),
        }
    }

    #[test]
    fn report_is_one_well_formed_self_contained_page() {
        let html = render(&data()).unwrap();
        assert!(html.starts_with("<!DOCTYPE html>"));
        for tag in ["html", "head", "body", "table", "h2", "svg"] {
            assert!(balanced(&html, tag), "unbalanced <{tag}>");
        }
        // Fees per day, histogram, bars, one history chart.
        assert_eq!(html.matches("<svg").count(), 4);
        // Nothing loaded from elsewhere: no scripts, links, images or stylesheets.
        for banned in ["<script", "<link", "<img", "src=", "href=", "@import"] {
            assert!(!html.contains(banned), "report contains {banned}");
        }
        assert!(!html.contains("<?xml"));
        // Alert text is escaped, not injected.
        assert!(html.contains("local &lt;b&gt;low&lt;/b&gt; &amp; &quot;drained&quot;"));
        assert!(html.contains("800001x1x0"));
    }

    #[test]
    fn empty_node_still_renders() {
        let html = render(&ReportData::default()).unwrap();
        assert!(
            html.contains("No open channels") && html.contains("No alerts") && html.contains("No history")
        );
        assert!(balanced(&html, "html") && balanced(&html, "body"));
    }

    #[test]
    fn daily_fees_bucket_by_utc_day_and_skip_failures() {
        let d = data();
        assert_eq!(d.daily_fees.len(), 30);
        let total: u64 = d.daily_fees.iter().map(|(_, f)| f.0).sum();
        assert_eq!(total, 2_500);
        assert_eq!(d.daily_fees[28], (T0 + DAY, Msat(2_500)));
        assert_eq!(d.daily_fees[29].0, T0 + 2 * DAY);
        assert_eq!(daily_fees(&[], 10, 30).len(), 1, "no days before the epoch");
    }

    #[test]
    fn dates_are_civil_utc() {
        assert_eq!(datetime(0), "1970-01-01 00:00");
        assert_eq!(datetime(1_700_000_000), "2023-11-14 22:13");
        assert_eq!(datetime(951_782_400), "2000-02-29 00:00");
        assert_eq!(sat(Msat(1_234_567_000)), "1,234,567");
        assert_eq!(sat(Msat(999)), "0");
    }
}
