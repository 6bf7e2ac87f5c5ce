//! Choosing the model for a board on evidence: which candidates meet the board's budgets, which
//! are on the Pareto front of accuracy × latency × size, and which one to flash, with the reason.
//!
//! The rule: among the candidates that meet every budget, the most accurate; candidates within
//! `tolerance` points of it count as equally accurate (a fraction of a point is inside the
//! noise of a few hundred test images), and among those the fastest on the board wins, then the
//! smallest file. Measuring is the caller's job (`lookout select` runs eval and bench); this
//! module only decides, so the decision is tested on exact numbers.

use serde::Serialize;

/// One measured candidate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Candidate {
    /// `name@version`.
    pub model: String,
    /// Where it came from.
    pub origin: String,
    /// Accuracy in percent (mAP@0.5:0.95 for detectors, top-1 for classifiers).
    pub accuracy: f64,
    /// Which accuracy measure.
    pub metric: String,
    /// The ONNX file.
    pub model_bytes: u64,
    /// Peak resident memory of lookout running it, measured here.
    pub peak_rss_bytes: Option<u64>,
    /// Median frame time measured here, in ms.
    pub host_ms: f64,
    /// Frame time on the board, in ms: estimated from `host_ms`, or `host_ms` itself when the
    /// board is this machine.
    pub board_ms: f64,
    /// Whether `board_ms` is an estimate.
    pub estimated: bool,
}

/// What the board allows.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Budgets {
    /// Largest model file.
    pub model_bytes: u64,
    /// Largest peak resident memory.
    pub ram_bytes: u64,
    /// Longest frame time, in ms.
    pub latency_ms: f64,
    /// Lowest accuracy, in percent.
    pub min_accuracy: Option<f64>,
}

/// A candidate with the verdicts on it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// The measurements.
    #[serde(flatten)]
    pub candidate: Candidate,
    /// Each budget it breaks, in words; empty when it meets them all.
    pub fails: Vec<String>,
    /// No other candidate is at least as good on accuracy, latency and size, and better on one.
    pub pareto: bool,
}

impl Row {
    /// Meets every budget.
    pub fn admissible(&self) -> bool {
        self.fails.is_empty()
    }
}

/// The outcome.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Selection {
    /// The board.
    pub board: String,
    /// Its budgets.
    pub budgets: Budgets,
    /// Accuracy points within which candidates count as equally accurate.
    pub tolerance: f64,
    /// Every candidate, in the order given.
    pub rows: Vec<Row>,
    /// Index into `rows` of the pick; `None` when no candidate meets every budget.
    pub pick: Option<usize>,
    /// Why this pick (or why none).
    pub reason: String,
}

/// Judges `candidates` against `budgets` and picks one.
pub fn select(
    board: &str,
    budgets: Budgets,
    candidates: Vec<Candidate>,
    tolerance: f64,
) -> Selection {
    let pareto: Vec<bool> = candidates
        .iter()
        .map(|c| !candidates.iter().any(|other| dominates(other, c)))
        .collect();
    let rows: Vec<Row> = candidates
        .into_iter()
        .zip(pareto)
        .map(|(candidate, pareto)| Row {
            fails: fails(&candidate, &budgets),
            candidate,
            pareto,
        })
        .collect();
    let admissible: Vec<usize> = (0..rows.len()).filter(|&i| rows[i].admissible()).collect();
    let best = admissible
        .iter()
        .map(|&i| rows[i].candidate.accuracy)
        .fold(f64::NEG_INFINITY, f64::max);
    let pick = admissible
        .iter()
        .copied()
        .filter(|&i| rows[i].candidate.accuracy >= best - tolerance)
        .min_by(|&a, &b| {
            let (a, b) = (&rows[a].candidate, &rows[b].candidate);
            a.board_ms
                .total_cmp(&b.board_ms)
                .then(a.model_bytes.cmp(&b.model_bytes))
        });
    let reason = explain(board, &rows, pick, best, tolerance);
    Selection {
        board: board.to_owned(),
        budgets,
        tolerance,
        rows,
        pick,
        reason,
    }
}

/// `a` is at least as good as `b` on accuracy, board latency and size, and better on one.
fn dominates(a: &Candidate, b: &Candidate) -> bool {
    let no_worse =
        a.accuracy >= b.accuracy && a.board_ms <= b.board_ms && a.model_bytes <= b.model_bytes;
    let better =
        a.accuracy > b.accuracy || a.board_ms < b.board_ms || a.model_bytes < b.model_bytes;
    no_worse && better
}

fn fails(c: &Candidate, budgets: &Budgets) -> Vec<String> {
    let mut fails = Vec::new();
    if c.model_bytes > budgets.model_bytes {
        fails.push(format!(
            "model file {} B > {} B",
            c.model_bytes, budgets.model_bytes
        ));
    }
    if let Some(rss) = c.peak_rss_bytes.filter(|&rss| rss > budgets.ram_bytes) {
        fails.push(format!("peak memory {rss} B > {} B", budgets.ram_bytes));
    }
    if c.board_ms > budgets.latency_ms {
        fails.push(format!(
            "latency {:.1} ms{} > {} ms",
            c.board_ms,
            if c.estimated { " (estimated)" } else { "" },
            budgets.latency_ms
        ));
    }
    if let Some(min) = budgets.min_accuracy.filter(|&min| c.accuracy < min) {
        fails.push(format!("{} {:.2} % < {min} %", c.metric, c.accuracy));
    }
    fails
}

fn explain(board: &str, rows: &[Row], pick: Option<usize>, best: f64, tolerance: f64) -> String {
    let Some(pick) = pick else {
        return format!(
            "no candidate meets every budget of {board}: {}",
            rows.iter()
                .map(|r| format!("{} ({})", r.candidate.model, r.fails.join("; ")))
                .collect::<Vec<_>>()
                .join(", ")
        );
    };
    let p = &rows[pick].candidate;
    let within = rows.iter().filter(|r| r.admissible()).count();
    let mut reason = format!(
        "{}: {} {:.2} %, {:.1} ms{} and {} B; ",
        p.model,
        p.metric,
        p.accuracy,
        p.board_ms,
        if p.estimated { " (estimated)" } else { "" },
        p.model_bytes
    );
    if p.accuracy >= best {
        reason.push_str(&format!(
            "the most accurate of the {within} candidates within every budget of {board}"
        ));
    } else {
        reason.push_str(&format!(
            "within {tolerance} points of the most accurate of the {within} candidates within \
             every budget of {board} ({best:.2} %), and faster or smaller"
        ));
    }
    let passed_over: Vec<String> = rows
        .iter()
        .filter(|r| !r.admissible() && r.candidate.accuracy > p.accuracy)
        .map(|r| {
            format!(
                "{} is more accurate but {}",
                r.candidate.model,
                r.fails.join("; ")
            )
        })
        .collect();
    if !passed_over.is_empty() {
        reason.push_str("; ");
        reason.push_str(&passed_over.join("; "));
    }
    reason
}

/// The table for people: one line per candidate, with its verdicts.
impl std::fmt::Display for Selection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let metric = self
            .rows
            .first()
            .map(|r| r.candidate.metric.as_str())
            .unwrap_or("accuracy");
        writeln!(
            f,
            "board {}: model ≤ {} B, peak memory ≤ {} B, latency ≤ {} ms{}",
            self.board,
            self.budgets.model_bytes,
            self.budgets.ram_bytes,
            self.budgets.latency_ms,
            self.budgets
                .min_accuracy
                .map(|m| format!(", {metric} ≥ {m} %"))
                .unwrap_or_default()
        )?;
        let width = self
            .rows
            .iter()
            .map(|r| r.candidate.model.chars().count())
            .chain(std::iter::once(36))
            .max()
            .unwrap_or(36);
        writeln!(
            f,
            "  {:<width$} {:>9} {:>10} {:>10} {:>11} {:>9} {:>6}  verdict",
            "model", metric, "file B", "here ms", "board ms", "RSS MiB", "front"
        )?;
        for (i, r) in self.rows.iter().enumerate() {
            let c = &r.candidate;
            let verdict = if Some(i) == self.pick {
                "PICK".to_owned()
            } else if r.admissible() {
                "meets budgets".to_owned()
            } else {
                r.fails.join("; ")
            };
            writeln!(
                f,
                "{} {:<width$} {:>9.2} {:>10} {:>10.3} {:>10.1}{} {:>9} {:>6}  {verdict}",
                if Some(i) == self.pick { "*" } else { " " },
                c.model,
                c.accuracy,
                c.model_bytes,
                c.host_ms,
                c.board_ms,
                if c.estimated { "~" } else { " " },
                c.peak_rss_bytes
                    .map(|b| format!("{:.1}", b as f64 / 1048576.0))
                    .unwrap_or_else(|| "?".into()),
                if r.pareto { "yes" } else { "" },
            )?;
        }
        if self.rows.iter().any(|r| r.candidate.estimated) {
            writeln!(
                f,
                "~ estimated from this machine's time (docs/choosing-a-model.md, \"Latency on a board\")"
            )?;
        }
        write!(f, "pick: {}", self.reason)
    }
}

/// The rows as CSV, one line per candidate with its verdicts.
pub fn to_csv(selection: &Selection) -> Result<String, csv::Error> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record([
        "model",
        "origin",
        "metric",
        "accuracy_percent",
        "model_bytes",
        "peak_rss_bytes",
        "host_ms",
        "board_ms",
        "board_ms_estimated",
        "pareto",
        "meets_budgets",
        "fails",
        "pick",
    ])?;
    for (i, r) in selection.rows.iter().enumerate() {
        let c = &r.candidate;
        writer.write_record([
            c.model.clone(),
            c.origin.clone(),
            c.metric.clone(),
            format!("{:.4}", c.accuracy),
            c.model_bytes.to_string(),
            c.peak_rss_bytes.map(|b| b.to_string()).unwrap_or_default(),
            format!("{:.4}", c.host_ms),
            format!("{:.4}", c.board_ms),
            c.estimated.to_string(),
            r.pareto.to_string(),
            r.admissible().to_string(),
            r.fails.join("; "),
            (Some(i) == selection.pick).to_string(),
        ])?;
    }
    let bytes = writer.into_inner().map_err(|e| e.into_error())?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// The plot could not be drawn (plotters' drawing error, which carries its backend's type).
#[derive(Debug, thiserror::Error)]
#[error("drawing the plot: {0}")]
pub struct PlotError(String);

/// Draws the candidates as an SVG: accuracy against board latency, one labelled point each
/// (file size in the label), the Pareto front joined by a line, candidates over a budget in
/// grey, the pick ringed, and the latency budget as a vertical line.
pub fn plot_svg(selection: &Selection) -> Result<String, PlotError> {
    use plotters::prelude::*;
    use plotters::style::text_anchor::{HPos, Pos, VPos};
    let rows = &selection.rows;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (900, 600)).into_drawing_area();
        let err = |e: &dyn std::fmt::Display| PlotError(e.to_string());
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let latency_max = rows
            .iter()
            .map(|r| r.candidate.board_ms)
            .fold(selection.budgets.latency_ms, f64::max)
            * 1.15;
        let (acc_lo, acc_hi) = rows.iter().fold((f64::MAX, f64::MIN), |(lo, hi), r| {
            (lo.min(r.candidate.accuracy), hi.max(r.candidate.accuracy))
        });
        let pad = ((acc_hi - acc_lo) * 0.15).max(1.0);
        let metric = rows
            .first()
            .map_or("accuracy", |r| r.candidate.metric.as_str());
        let estimated = rows.iter().any(|r| r.candidate.estimated);
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!("{}: {metric} against latency", selection.board),
                ("sans-serif", 22),
            )
            .margin(20)
            .x_label_area_size(45)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..latency_max, (acc_lo - pad)..(acc_hi + pad))
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .x_desc(if estimated {
                "latency on the board, ms (estimated)"
            } else {
                "latency, ms (measured)"
            })
            .y_desc(format!("{metric}, %"))
            .draw()
            .map_err(|e| err(&e))?;
        let budget = selection.budgets.latency_ms;
        chart
            .draw_series(LineSeries::new(
                [(budget, acc_lo - pad), (budget, acc_hi + pad)],
                RED.stroke_width(1),
            ))
            .map_err(|e| err(&e))?
            .label(format!("latency budget {budget} ms"))
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], RED));
        let mut front: Vec<(f64, f64)> = rows
            .iter()
            .filter(|r| r.pareto)
            .map(|r| (r.candidate.board_ms, r.candidate.accuracy))
            .collect();
        front.sort_by(|a, b| a.0.total_cmp(&b.0));
        chart
            .draw_series(LineSeries::new(front, BLUE.stroke_width(2)))
            .map_err(|e| err(&e))?
            .label("Pareto front (accuracy, latency, size)")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLUE));
        // Candidates close together (forms of one model often are) get their labels stacked
        // rather than printed over each other.
        let near = |a: &Candidate, b: &Candidate| {
            (a.board_ms - b.board_ms).abs() < latency_max * 0.15
                && (a.accuracy - b.accuracy).abs() < (acc_hi - acc_lo + 2.0 * pad) * 0.04
        };
        for (i, r) in rows.iter().enumerate() {
            let c = &r.candidate;
            let colour = if r.admissible() {
                BLUE
            } else {
                RGBColor(150, 150, 150)
            };
            let at = (c.board_ms, c.accuracy);
            chart
                .draw_series([Circle::new(at, 5, colour.filled())])
                .map_err(|e| err(&e))?;
            if Some(i) == selection.pick {
                chart
                    .draw_series([Circle::new(at, 11, GREEN.stroke_width(3))])
                    .map_err(|e| err(&e))?;
            }
            let label = format!(
                "{} ({:.0} KB){}",
                c.model,
                c.model_bytes as f64 / 1000.0,
                if Some(i) == selection.pick {
                    " PICK"
                } else {
                    ""
                }
            );
            let stacked = rows[..i].iter().filter(|o| near(&o.candidate, c)).count() as i32;
            // Labels of points in the right half end at the point, or the long model names
            // would run off the plot.
            let (dx, anchor) = if c.board_ms > latency_max / 2.0 {
                (-10, HPos::Right)
            } else {
                (10, HPos::Left)
            };
            let style =
                TextStyle::from(("sans-serif", 13).into_font()).pos(Pos::new(anchor, VPos::Top));
            chart
                .draw_series([
                    EmptyElement::at(at) + Text::new(label, (dx, -6 + 15 * stacked), style)
                ])
                .map_err(|e| err(&e))?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| err(&e))?;
        root.present().map_err(|e| err(&e))?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(model: &str, accuracy: f64, board_ms: f64, model_bytes: u64) -> Candidate {
        Candidate {
            model: model.into(),
            origin: format!("{model}.onnx"),
            accuracy,
            metric: "mAP@0.5:0.95".into(),
            model_bytes,
            peak_rss_bytes: Some(30 << 20),
            host_ms: board_ms / 5.0,
            board_ms,
            estimated: true,
        }
    }

    fn budgets(latency_ms: f64) -> Budgets {
        Budgets {
            model_bytes: 1_000_000,
            ram_bytes: 100 << 20,
            latency_ms,
            min_accuracy: Some(60.0),
        }
    }

    fn set() -> Vec<Candidate> {
        vec![
            candidate("small", 69.2, 20.0, 89_000),
            candidate("small-fp32", 69.2, 25.0, 331_000),
            candidate("large", 74.0, 90.0, 400_000),
            candidate("huge", 76.0, 60.0, 2_000_000),
            candidate("bad", 40.0, 5.0, 50_000),
        ]
    }

    #[test]
    fn a_loose_budget_takes_the_most_accurate_that_fits_and_says_why() {
        let s = select("fast", budgets(100.0), set(), 0.5);
        assert_eq!(s.pick, Some(2), "{s}");
        assert!(
            s.reason.starts_with("large: mAP@0.5:0.95 74.00 %"),
            "{}",
            s.reason
        );
        assert!(
            s.reason.contains("most accurate of the 3 candidates"),
            "{}",
            s.reason
        );
        assert!(
            s.reason
                .contains("huge is more accurate but model file 2000000 B > 1000000 B"),
            "{}",
            s.reason
        );
    }

    #[test]
    fn a_tight_latency_budget_changes_the_pick() {
        let s = select("slow", budgets(50.0), set(), 0.5);
        assert_eq!(s.pick, Some(0), "{s}");
        assert!(
            s.reason
                .contains("large is more accurate but latency 90.0 ms (estimated) > 50 ms"),
            "{}",
            s.reason
        );
        // Equal accuracy: the faster, smaller form wins over fp32.
        assert!(s.rows[1].admissible());
    }

    #[test]
    fn the_front_drops_what_another_beats_on_every_axis() {
        let s = select("fast", budgets(100.0), set(), 0.5);
        let front: Vec<&str> = s
            .rows
            .iter()
            .filter(|r| r.pareto)
            .map(|r| r.candidate.model.as_str())
            .collect();
        // small-fp32 is beaten by small on latency and size at equal accuracy.
        assert_eq!(front, ["small", "large", "huge", "bad"]);
    }

    #[test]
    fn within_the_tolerance_speed_decides() {
        let mut c = set();
        c[2].accuracy = 69.5;
        let s = select("fast", budgets(100.0), c, 0.5);
        assert_eq!(s.pick, Some(0), "{s}");
        assert!(s.reason.contains("within 0.5 points"), "{}", s.reason);
    }

    #[test]
    fn no_admissible_candidate_is_said_plainly() {
        let s = select("tiny", budgets(1.0), set(), 0.5);
        assert_eq!(s.pick, None);
        assert!(
            s.reason
                .starts_with("no candidate meets every budget of tiny"),
            "{}",
            s.reason
        );
    }

    #[test]
    fn the_plot_names_every_candidate_and_the_pick() {
        let s = select("slow", budgets(50.0), set(), 0.5);
        let svg = plot_svg(&s).expect("svg");
        assert!(
            svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"),
            "{svg}"
        );
        for r in &s.rows {
            assert!(
                svg.contains(&format!("{} (", r.candidate.model)),
                "{}",
                r.candidate.model
            );
        }
        assert_eq!(svg.matches("PICK").count(), 1);
        assert!(svg.contains("latency budget 50 ms"));
        assert!(svg.contains("latency on the board, ms (estimated)"));
    }

    #[test]
    fn csv_has_a_row_per_candidate_with_quoted_verdicts() {
        let s = select("slow", budgets(50.0), set(), 0.5);
        let text = to_csv(&s).expect("csv");
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("row")).collect();
        assert_eq!(rows.len(), 5);
        assert_eq!(&rows[0][0], "small");
        assert_eq!(&rows[0][12], "true");
        assert_eq!(&rows[2][10], "false");
        assert!(rows[2][11].contains("latency 90.0 ms"));
        assert!(
            rows[3][11].contains("; "),
            "two failures joined: {}",
            &rows[3][11]
        );
    }
}
