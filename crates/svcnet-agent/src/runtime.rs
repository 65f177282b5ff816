//! The pod runtime interface that the node's streaming server (exec, attach, port-forward, logs) calls.
//!
//! The trait and its types moved to `svcnet_streaming::runtime` (same shape, plus
//! `attach` with a refusing default) so that svcnet-streaming does not depend on
//! the agent; see `crates/svcnet-streaming/TRAIT.md`. Re-exported here so that
//! `crate::runtime::...` paths keep working.

pub use svcnet_streaming::runtime::*;
