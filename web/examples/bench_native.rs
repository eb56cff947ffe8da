//! Native timing of what the page does per change (simulate + chart data), for comparison with
//! the browser's figure: `cargo run --release -p web --example bench_native`.
use sim_core::engine::Engine;
use sim_core::scenario::{preset, PRESET_NAMES};
use std::time::Instant;
use web::chart_data::ChartData;

fn main() {
    for name in PRESET_NAMES {
        let s = preset(name).unwrap();
        let mut best = (f64::MAX, f64::MAX);
        for _ in 0..5 {
            let t0 = Instant::now();
            let t = Engine::run(&s);
            let t1 = Instant::now();
            let d = ChartData::from_trace(&t, &s);
            let t2 = Instant::now();
            std::hint::black_box(d);
            best.0 = best.0.min((t1 - t0).as_secs_f64() * 1e3);
            best.1 = best.1.min((t2 - t1).as_secs_f64() * 1e3);
        }
        println!(
            "{name:14} {:5.0} s: simulate {:7.2} ms, chart data {:6.2} ms",
            s.duration_s, best.0, best.1
        );
    }
}
