//! The memory allocator of every program built on this crate (the daemon, its tests and its
//! benches alike): mimalloc.
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
