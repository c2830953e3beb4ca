//! What rendering one email costs: every sample of every kind rendered by the repository's
//! templates, in English and in French, on one thread, with the CSS inlined as the templates load
//! (what Herald does) and, for comparison, inlined on every email as it is rendered. Prints one
//! `key=value` line per figure; it asserts nothing.
//!
//! ```sh
//! cargo bench --bench render          # 2,000 rounds of every sample
//! N=500 ONLY=inlined_at_load cargo bench --bench render    # one of the two (for a profiler)
//! ```

use std::{path::Path, time::Instant};

use herald::{
    kinds,
    render::{Inlining, Options, Templates},
};

fn main() {
    let n: u32 = std::env::var("N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
    let load = |inlining| {
        let options = Options {
            inlining,
            ..Options::default()
        };
        Templates::load_with(&dir, options, &kinds::samples()).expect("the templates load")
    };
    let at_load = load(Inlining::AtLoad);
    let at_render = load(Inlining::AtRender);
    assert!(!at_load.inlines_each_email());
    let samples = kinds::samples();
    for locale in ["en", "fr"] {
        let payloads: Vec<_> = samples
            .iter()
            .map(|s| {
                let mut v = s.to_value();
                v["user"]["locale"] = locale.into();
                (s.kind(), v, s.at())
            })
            .collect();
        let only = std::env::var("ONLY").unwrap_or_default();
        for (step, templates) in [
            ("inlined_at_load", &at_load),
            ("inlined_per_email", &at_render),
        ] {
            if !only.is_empty() && only != step {
                continue;
            }
            let started = Instant::now();
            let mut bytes = 0;
            for _ in 0..n {
                for (kind, payload, at) in &payloads {
                    let r = templates
                        .render(kind, payload, *at)
                        .expect("a sample renders");
                    bytes += r.html.len() + r.text.len();
                }
            }
            let emails = n as usize * payloads.len();
            let us = started.elapsed().as_secs_f64() * 1e6 / emails as f64;
            println!(
                "step={step} locale={locale} emails={emails} us_per_email={us:.1} bytes_per_email={}",
                bytes / emails
            );
        }
    }
}
