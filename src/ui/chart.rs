//! The overview's throughput chart: sent and failed per minute over the last hour, as inline SVG
//! drawn on the server (no script, nothing to fetch).

use std::fmt::Write;

use crate::store::{DeliveryStatus, ui::MinuteCount};

const MINUTES: usize = 60;
const BAR: usize = 12;
const HEIGHT: usize = 140;
/// The narrowest left margin; a wider top label (`1942/min`) widens it.
const LEFT: usize = 44;
/// The width of one character of the 11px axis labels, rounded up (digits are ~6.2px).
const CHAR: usize = 7;
const BOTTOM: usize = 22;

/// The chart as an `<svg>` element. Holds numbers only, so it is safe to insert unescaped.
pub fn throughput(counts: &[MinuteCount]) -> String {
    let mut sent = [0i64; MINUTES];
    let mut failed = [0i64; MINUTES];
    for c in counts {
        let Ok(i) = usize::try_from(c.minutes_ago) else {
            continue;
        };
        if i >= MINUTES {
            continue;
        }
        match c.status {
            DeliveryStatus::Sent => sent[i] += c.n,
            DeliveryStatus::Failed => failed[i] += c.n,
            _ => {}
        }
    }
    let top = (0..MINUTES)
        .map(|i| sent[i] + failed[i])
        .max()
        .unwrap_or(0)
        .max(1);
    let top_label = format!("{top}/min");
    // Room for the whole label right-aligned at `left - 4`, so it is never clipped.
    let left = LEFT.max(top_label.len() * CHAR + 8);
    let width = left + MINUTES * BAR + 8;
    let total = HEIGHT + BOTTOM;
    let mut svg = format!(
        r#"<svg class="chart" role="img" aria-label="emails sent and failed per minute, last hour" width="{width}" height="{total}" viewBox="0 0 {width} {total}" xmlns="http://www.w3.org/2000/svg">"#
    );
    let scale = |n: i64| (n as f64 / top as f64 * (HEIGHT - 10) as f64).round() as usize;
    // Axis and the top value.
    let _ = write!(
        svg,
        r##"<line x1="{left}" y1="{HEIGHT}" x2="{}" y2="{HEIGHT}" stroke="#888"/><text x="{}" y="14" text-anchor="end" font-size="11">{top_label}</text><text x="{}" y="{HEIGHT}" text-anchor="end" font-size="11">0</text>"##,
        width - 8,
        left - 4,
        left - 4
    );
    for (i, (s, f)) in sent.iter().zip(&failed).enumerate() {
        // Oldest on the left, the current minute on the right.
        let x = left + (MINUTES - 1 - i) * BAR;
        let (hs, hf) = (scale(*s), scale(*f));
        let label = if i == 0 {
            "this minute".to_owned()
        } else {
            format!("{i} min ago")
        };
        let _ = write!(svg, "<g><title>{label}: {s} sent, {f} failed</title>");
        if hs > 0 {
            let _ = write!(
                svg,
                r##"<rect x="{x}" y="{}" width="{}" height="{hs}" fill="#2e7d32"/>"##,
                HEIGHT - hs,
                BAR - 2
            );
        }
        if hf > 0 {
            let _ = write!(
                svg,
                r##"<rect x="{x}" y="{}" width="{}" height="{hf}" fill="#c62828"/>"##,
                HEIGHT - hs - hf,
                BAR - 2
            );
        }
        svg.push_str("</g>");
    }
    for (minutes, anchor) in [
        (60, "start"),
        (45, "middle"),
        (30, "middle"),
        (15, "middle"),
    ] {
        let x = left + (MINUTES - minutes) * BAR;
        let _ = write!(
            svg,
            r#"<text x="{x}" y="{}" text-anchor="{anchor}" font-size="11">-{minutes} min</text>"#,
            HEIGHT + 16
        );
    }
    let _ = write!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="end" font-size="11">now</text></svg>"#,
        width - 8,
        HEIGHT + 16
    );
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_the_busiest_minute_and_old_minutes_are_dropped() {
        use DeliveryStatus::{Failed, Sent};
        let c = |m, status, n| MinuteCount {
            minutes_ago: m,
            status,
            n,
        };
        let svg = throughput(&[
            c(0, Sent, 10),
            c(0, Failed, 5),
            c(3, Sent, 1),
            c(60, Sent, 99),
        ]);
        assert!(svg.contains("15/min"), "{svg}");
        assert!(svg.contains("this minute: 10 sent, 5 failed"), "{svg}");
        assert!(svg.contains("3 min ago: 1 sent, 0 failed"), "{svg}");
        assert!(!svg.contains("99"), "{svg}");
    }

    #[test]
    fn a_wide_top_label_widens_the_margin_instead_of_being_clipped() {
        let svg = throughput(&[MinuteCount {
            minutes_ago: 0,
            status: DeliveryStatus::Sent,
            n: 1_234_567,
        }]);
        // "1234567/min" is 11 characters: right-aligned at x, it needs x >= 11 * CHAR.
        let at = svg.find(">1234567/min<").expect("the label");
        let x: usize = svg[..at]
            .rsplit("<text x=\"")
            .next()
            .and_then(|t| t.split('"').next())
            .and_then(|x| x.parse().ok())
            .expect("the label's x");
        assert!(x >= 11 * CHAR, "x = {x}: {svg}");
    }
}
