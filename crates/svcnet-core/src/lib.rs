//! Pure domain logic of svcnet: no tokio, no sockets, no files.
//!
//! Every decision svcnet makes (what a request validates to, which IP a
//! Service gets, which endpoints a Service has, which variables a pod sees)
//! is a function here, with table-driven tests beside it. The crates at the
//! edges only apply these decisions.

pub mod alloc;
pub mod defaults;
pub mod endpoints;
pub mod envvars;
pub mod field_errors;
pub mod fields;
pub mod names;
pub mod patch;
pub mod selector;
pub mod table;
pub mod validation;

pub use k8s_openapi;
