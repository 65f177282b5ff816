//! svcnet-proxy: the kube-proxy of svcnet — change tracker, pure planner, and nftables / iptables / userspace backends.

pub mod backend;
pub mod conntrack;
pub mod nftables;
pub mod plan;
pub mod tracker;
pub mod iptables;

#[cfg(test)]
mod flow_tests;
#[cfg(test)]
mod testing;
