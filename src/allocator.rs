//! The memory allocator of every program built on this crate (the daemon, its tests and its
//! benches alike): mimalloc.
//!
//! A fire composes and frees a few million small strings and vectors; glibc's allocator took
//! about a third of the planner's CPU time on them (BENCHMARKS.md, "Planning from an app's own
//! database"). mimalloc's version 2 gives freed memory back within milliseconds: the
//! 1,000,000-user plan peaked at 34 to 39 MB with it, against 52 to 100 MB with version 3's
//! defaults (which keep freed memory for a second). In the email bench it sent 10 % more emails a
//! second than glibc's allocator, for a peak of 59 MB instead of 37.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
