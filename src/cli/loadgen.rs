//! `kav loadgen`: many simulated callers against a running server, one steady-state run or a
//! capacity search over `--steps`.

use std::time::Duration;

use anyhow::Result;

use kav::caller;
use kav::config::Config;

/// Runs the load (or the capacity steps) and prints the report.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn run(
    cfg: &Config,
    calls: usize,
    duration: u64,
    ramp: u64,
    server: Option<String>,
    barge_every: u32,
    seed: u64,
    rtt: u64,
    jitter: u64,
    steps: Vec<usize>,
) -> Result<()> {
    let opts = caller::loadgen::LoadOptions {
        calls,
        duration: Duration::from_secs(duration),
        ramp: Duration::from_secs(ramp),
        server,
        barge_every,
        seed,
        lead_frames: cfg.playout.lead_frames,
        rtt: Duration::from_millis(rtt),
        jitter: Duration::from_millis(jitter),
    };
    if !steps.is_empty() {
        println!(
            "loadgen: steps {steps:?} calls, {duration} s steady state, ramp {ramp} s, rtt {rtt} ms, jitter {jitter} ms"
        );
        let done = caller::loadgen::find_capacity(opts, &steps, |step| {
            println!("--- {} calls", step.calls);
            print!("{}", step.report);
        })
        .await
        .map_err(anyhow::Error::msg)?;
        print!("\n{}", caller::loadgen::capacity_table(&done));
        return Ok(());
    }
    println!(
        "loadgen: {calls} calls, {duration} s steady state, ramp {ramp} s, rtt {rtt} ms, jitter {jitter} ms"
    );
    let report = caller::loadgen::run(opts)
        .await
        .map_err(anyhow::Error::msg)?;
    print!("{report}");
    Ok(())
}
