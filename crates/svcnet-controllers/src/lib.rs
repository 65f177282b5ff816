//! svcnet's controllers: reconcilers that talk to any Kubernetes API server through kube-rs only.
//!
//! Every decision (how many pods a ReplicaSet lacks, which node a pod
//! goes to, which address a LoadBalancer gets, when a node is lost, which
//! dependents to collect, who leads) is a pure function in its module,
//! with table-driven tests. [`run`] holds the edges: watch caches, work
//! queues and the writes that apply those decisions.

pub mod cache;
pub mod cli;
pub mod deployment;
pub mod events;
pub mod gc;
pub mod hash;
pub mod lbpool;
pub mod leader;
pub mod nodelifecycle;
pub mod queue;
pub mod replicaset;
pub mod run;
pub mod scheduler;

pub use run::{Config, Controllers, RunError};
