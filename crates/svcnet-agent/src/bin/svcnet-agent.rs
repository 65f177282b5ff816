//! Standalone agent binary (tests, single-node use); `svcnet agent` is the usual entry point.

fn main() {}
