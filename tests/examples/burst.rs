//! `make bench`'s burst run: 2 000 members each gaining a Tapkey grant, a Salto KS and a Brivo
//! membership, against simulators limited to 20, 10 and 20 calls/s (`PORTIER_BURST_WEBHOOKS`,
//! `PORTIER_BURST_RATE_TAPKEY|_SALTO|_BRIVO`, `PORTIER_BURST_WORKERS` change that). Prints the
//! figures as one JSON line and draws `docs/bench/convergence.svg`: each provider's calls per
//! second against its R/s line, and the accesses still missing.

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
    let root = SVGBackend::new(path, (960, 680)).into_drawing_area();
    root.fill(&WHITE)?;
    let (upper, lower) = root.split_vertically(400);

    let colours = [BLUE, MAGENTA, RGBColor(230, 140, 0)];
    let series: Vec<_> = report.providers.iter().map(|p| per_second(&p.calls, seconds)).collect();
    let peak = series.iter().flatten().copied().max().unwrap_or(0) as f64;
    let top = report.providers.iter().map(|p| p.rate).fold(peak, f64::max) * 1.25;
    let mut calls = ChartBuilder::on(&upper)
        .caption(
            format!(
                "{} webhooks: converged in {:.1} s = {:.3} x C/R of {}, {} throttled",
                report.burst.webhooks,
                report.converged_after,
                report.ratio(),
                report.bottleneck().name,
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
        webhooks: env("PORTIER_BURST_WEBHOOKS", 2000),
        rates: Rates {
            tapkey: env("PORTIER_BURST_RATE_TAPKEY", 20.0),
            salto: env("PORTIER_BURST_RATE_SALTO", 10.0),
            brivo: env("PORTIER_BURST_RATE_BRIVO", 20.0),
        },
        workers: env("PORTIER_BURST_WORKERS", 4),
    };
    let report = run(burst).await;
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/bench/convergence.svg");
    draw(&report, &path)?;
    println!("BURST {}", report.summary());
    Ok(())
}
