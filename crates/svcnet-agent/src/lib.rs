//! svcnet node agent: registers its Node, runs the pods bound to it as processes in their own namespaces.

pub mod runtime;

pub use runtime::{PodRef, PodRuntime};
