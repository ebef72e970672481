//! `make bench`'s burst run: 2 000 webhooks against a Tapkey simulator limited to 20 calls/s
//! (`PORTIER_BURST_WEBHOOKS`, `PORTIER_BURST_RATE`, `PORTIER_BURST_WORKERS` change that).
//! Prints the figures as one JSON line and draws `docs/bench/convergence.svg`: provider calls
//! per second against the R/s line, and the members still waiting for their grant.

use std::path::PathBuf;

use plotters::prelude::*;
use testkit::burst::{Burst, BurstReport, run};

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn draw(report: &BurstReport, path: &PathBuf) -> Result<(), Box<dyn std::error::Error>> {
    let rate = report.burst.rate;
    let end = report.converged_after.max(1.0);
    let seconds = end.ceil() as usize;
    let mut per_second = vec![0usize; seconds + 1];
    for (t, _) in &report.call_times {
        if let Some(slot) = per_second.get_mut(t.max(0.0) as usize) {
            *slot += 1;
        }
    }
    let root = SVGBackend::new(path, (960, 640)).into_drawing_area();
    root.fill(&WHITE)?;
    let (upper, lower) = root.split_vertically(340);

    let peak = per_second.iter().copied().max().unwrap_or(0) as f64;
    let mut calls = ChartBuilder::on(&upper)
        .caption(
            format!(
                "{} webhooks, Tapkey limited to {rate} calls/s: converged in {:.1} s = {:.2} x C/R, {} x 429",
                report.burst.webhooks,
                report.converged_after,
                report.ratio(),
                report.throttled
            ),
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..end, 0f64..(peak.max(rate) * 1.25))?;
    calls.configure_mesh().x_desc("seconds since the first webhook").y_desc("Tapkey calls / s").draw()?;
    calls
        .draw_series(LineSeries::new(
            per_second.iter().enumerate().take(seconds).map(|(s, c)| (s as f64 + 0.5, *c as f64)),
            BLUE.stroke_width(2),
        ))?
        .label("provider calls per second")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE.stroke_width(2)));
    calls
        .draw_series(LineSeries::new(vec![(0.0, rate), (end, rate)], RED.stroke_width(1)))?
        .label(format!("limit R = {rate}/s"))
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
    calls.configure_series_labels().position(SeriesLabelPosition::LowerRight).border_style(BLACK).draw()?;

    let mut left = ChartBuilder::on(&lower)
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..end, 0f64..(report.burst.webhooks as f64 * 1.05))?;
    left.configure_mesh().x_desc("seconds since the first webhook").y_desc("changes outstanding").draw()?;
    left.draw_series(LineSeries::new(
        report.outstanding.iter().map(|(t, n)| (*t, *n as f64)),
        GREEN.stroke_width(2),
    ))?
    .label("members still without their grant")
    .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], GREEN.stroke_width(2)));
    left.configure_series_labels().position(SeriesLabelPosition::UpperRight).border_style(BLACK).draw()?;
    root.present()?;
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let burst = Burst {
        webhooks: env("PORTIER_BURST_WEBHOOKS", 2000),
        rate: env("PORTIER_BURST_RATE", 20.0),
        workers: env("PORTIER_BURST_WORKERS", 4),
    };
    let report = run(burst).await;
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/bench/convergence.svg");
    draw(&report, &path)?;
    println!("BURST {}", report.summary());
    Ok(())
}
