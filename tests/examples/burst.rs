//! `make bench`'s burst run: 2 000 members each gaining a Tapkey grant, a Salto KS and a Brivo
//! membership, against simulators limited to 20, 10 and 20 calls/s (`PORTIER_BURST_WEBHOOKS`,
//! `PORTIER_BURST_RATE_TAPKEY|_SALTO|_BRIVO`, `PORTIER_BURST_WORKERS` change that). Prints the
//! figures as one JSON line and draws `docs/bench/convergence.svg`: each provider's calls per
//! second against its R/s line, Nexudus's reads in the last minute against its 120/min (the
//! simulated Nexudus holds its documented limits unless `PORTIER_BURST_NEXUDUS_LIMITED=false`),
//! and the accesses still missing.

use std::path::PathBuf;

use plotters::prelude::*;
use testkit::burst::{Burst, BurstReport, Rates, run};

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Calls per second, one slot per whole second of the run.
fn per_second(calls: &[(f64, u16)], seconds: usize) -> Vec<usize> {
    let mut slots = vec![0usize; seconds + 1];
    for (t, _) in calls {
        if let Some(slot) = slots.get_mut(t.max(0.0) as usize) {
            *slot += 1;
        }
    }
    slots
}

fn draw(report: &BurstReport, path: &PathBuf) -> Result<(), Box<dyn std::error::Error>> {
    let end = report.converged_after.max(1.0);
    let seconds = end.ceil() as usize;
    let root = SVGBackend::new(path, (960, 900)).into_drawing_area();
    root.fill(&WHITE)?;
    let (upper, rest) = root.split_vertically(400);
    let (middle, lower) = rest.split_vertically(220);

    let colours = [BLUE, MAGENTA, RGBColor(230, 140, 0)];
    let series: Vec<_> = report.providers.iter().map(|p| per_second(&p.calls, seconds)).collect();
    let peak = series.iter().flatten().copied().max().unwrap_or(0) as f64;
    let top = report.providers.iter().map(|p| p.rate).fold(peak, f64::max) * 1.25;
    let mut calls = ChartBuilder::on(&upper)
        .caption(
            format!(
                "{} webhooks: converged in {:.1} s = {:.3} x the bound ({}), {} throttled",
                report.burst.webhooks,
                report.converged_after,
                report.ratio(),
                report.bound_by(),
                report.throttled()
            ),
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..end, 0f64..top)?;
    calls.configure_mesh().x_desc("seconds since the first webhook").y_desc("provider calls / s").draw()?;
    for ((p, slots), colour) in report.providers.iter().zip(&series).zip(colours) {
        calls
            .draw_series(LineSeries::new(
                slots.iter().enumerate().take(seconds).map(|(s, c)| (s as f64 + 0.5, *c as f64)),
                colour.stroke_width(2),
            ))?
            .label(format!("{} calls/s (limit R = {}/s, dashed)", p.name, p.rate))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2)));
        calls.draw_series(DashedLineSeries::new(vec![(0.0, p.rate), (end, p.rate)], 6, 4, colour.into()))?;
    }
    calls.configure_series_labels().position(SeriesLabelPosition::LowerRight).border_style(BLACK).draw()?;

    // Nexudus: reads in the minute up to each instant against the 120 a minute it allows.
    let reads = &report.source.calls;
    let window: Vec<(f64, f64)> = (0..=seconds * 4)
        .map(|q| q as f64 / 4.0)
        .map(|t| (t, reads.iter().filter(|(at, _)| *at <= t && *at > t - 60.0).count() as f64))
        .collect();
    let limit = 120.0;
    let mut nexudus = ChartBuilder::on(&middle)
        .caption(
            format!(
                "Nexudus: {} reads ({:.3} per change), {} throttled; a lone webhook: {} read(s)",
                reads.len(),
                reads.len() as f64 / report.burst.webhooks.max(1) as f64,
                report.source.throttled,
                report.source.lone_reads
            ),
            ("sans-serif", 16),
        )
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..end, 0f64..limit * 1.25)?;
    nexudus
        .configure_mesh()
        .x_desc("seconds since the first webhook")
        .y_desc("reads in the last 60 s")
        .draw()?;
    let teal = RGBColor(0, 128, 128);
    nexudus
        .draw_series(LineSeries::new(window, teal.stroke_width(2)))?
        .label("Nexudus reads in the last minute (limit 120/min, dashed)")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], teal.stroke_width(2)));
    nexudus.draw_series(DashedLineSeries::new(vec![(0.0, limit), (end, limit)], 6, 4, teal.into()))?;
    nexudus.configure_series_labels().position(SeriesLabelPosition::UpperRight).border_style(BLACK).draw()?;

    let total = (report.burst.webhooks * report.providers.len()) as f64;
    let mut left = ChartBuilder::on(&lower)
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..end, 0f64..(total * 1.05))?;
    left.configure_mesh().x_desc("seconds since the first webhook").y_desc("changes outstanding").draw()?;
    left.draw_series(LineSeries::new(
        report.outstanding.iter().map(|(t, n)| (*t, *n as f64)),
        GREEN.stroke_width(2),
    ))?
    .label("grants and memberships still missing")
    .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], GREEN.stroke_width(2)));
    left.configure_series_labels().position(SeriesLabelPosition::UpperRight).border_style(BLACK).draw()?;
    root.present()?;
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let burst = Burst {
        webhooks: env("PORTIER_BURST_WEBHOOKS", 3000),
        rates: Rates {
            tapkey: env("PORTIER_BURST_RATE_TAPKEY", 20.0),
            salto: env("PORTIER_BURST_RATE_SALTO", 10.0),
            brivo: env("PORTIER_BURST_RATE_BRIVO", 20.0),
        },
        workers: env("PORTIER_BURST_WORKERS", 4),
        nexudus_limited: env("PORTIER_BURST_NEXUDUS_LIMITED", true),
    };
    let report = run(burst).await;
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/bench/convergence.svg");
    draw(&report, &path)?;
    println!("BURST {}", report.summary());
    Ok(())
}
