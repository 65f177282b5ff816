//! svcnet-proxy: the kube-proxy of svcnet — change tracker, pure planner, and nftables / iptables / userspace backends.
//!
//! Data flow: watch events → [`tracker::Tracker`] → [`tracker::DesiredState`]
//! (plans from [`plan`]) → one [`backend::Backend`] on its own thread,
//! synced on a bounded-frequency [`runner::Schedule`] by [`proxy::run`].

pub mod backend;
pub mod config;
pub mod conntrack;
pub mod iptables;
pub mod libnft;
pub mod metrics;
pub mod nftables;
pub mod plan;
pub mod proxy;
pub mod relay;
pub mod runner;
pub mod tracker;
pub mod userspace;

#[cfg(test)]
mod flow_tests;
#[cfg(test)]
mod testing;
