//! The memory allocator of every program built on this crate (the daemon, its tests and its
//! benches alike): mimalloc, and the one option Herald sets on it.
//!
//! A fire composes and frees a few million small strings and vectors; glibc's allocator took
//! about a third of the planner's CPU time on them (BENCHMARKS.md, "Planning from an app's own
//! database"). mimalloc's version 2 gives freed memory back within milliseconds: the
//! 1,000,000-user plan peaked at 34 to 39 MB with it, against 52 to 100 MB with version 3's
//! defaults (which keep freed memory for a second). In the email bench it sent 10 % more emails a
//! second than glibc's allocator, for a peak of 59 MB instead of 37.
//!
//! It is built with `MI_DEFAULT_ARENA_EAGER_COMMIT=0` (`.cargo/config.toml`): on Linux mimalloc
//! otherwise commits each arena whole when it makes it, which the embedded daemon's email phase
//! showed as 80 MB peak RSS instead of 51, for the same emails a second.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc 2's `mi_option_purge_delay`, by its place in the header's `mi_option_e` (the Rust
/// binding names no constant for it); `the_purge_delay_option_is_mimallocs` checks it.
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Makes mimalloc give memory back to the system as soon as it is free, instead of 10 ms later
/// (its default; up to 100 ms for whole arenas). An embedded daemon sending a fire frees memory
/// faster than 10 ms apart, so what it would give back piled up: its peak RSS was 4 MB lower with
/// this, for ~5 % fewer emails a second. `herald run` sets it on one file only: on PostgreSQL +
/// Redis the email bench peaked 5 MB lower at the same speed, but the million-user weekly report
/// took 19.0–19.4 s instead of 17.4 (BENCHMARKS.md, "One file under 40 MB").
///
/// Call it before any thread is started: mimalloc's options are plain variables.
#[allow(unsafe_code)]
pub fn return_freed_memory_at_once() {
    // SAFETY: `mi_option_set` writes a number into mimalloc's table of options; it takes no
    // pointer and needs no initialisation. The caller runs it while the process has one thread,
    // so no allocation reads the option as it is written.
    unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, 0) }
}

#[cfg(test)]
mod tests {
    #[test]
    #[allow(unsafe_code)]
    fn the_purge_delay_option_is_mimallocs() {
        // mimalloc's default purge delay is 10 ms; the test process never changes it (unless
        // MIMALLOC_PURGE_DELAY is set around it).
        let expected = std::env::var("MIMALLOC_PURGE_DELAY")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(10);
        // SAFETY: reads one number from mimalloc's table of options.
        let value = unsafe { libmimalloc_sys::mi_option_get(super::PURGE_DELAY) };
        assert_eq!(
            value,
            expected,
            "option {} is not mimalloc's purge delay (its default is 10 ms): see mimalloc.h's mi_option_e",
            super::PURGE_DELAY
        );
    }
}
