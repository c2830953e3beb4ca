//! Script entries of the SMTP sink ([`super::SmtpSink::script`]) that are actions rather than a
//! reply line: kept apart from `smtp_sink.rs`, which is long enough.

/// Reads the whole message up to its final `.`, then closes the connection without answering:
/// a reset after DATA, when the client cannot tell whether the server took the message. The
/// message counts as offered, not as accepted.
pub const CLOSE: &str = "close";

/// Whether a script entry is [`CLOSE`] (any case).
pub fn is_close(entry: &str) -> bool {
    entry.eq_ignore_ascii_case(CLOSE)
}
