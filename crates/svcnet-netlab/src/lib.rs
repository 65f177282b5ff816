//! svcnet's network lab: node namespaces on a bridged node network, pod bridges, host attachment and routes.
//!
//! Topology (defaults): a lab namespace `svcnet-<cluster>-net` holds the
//! node-network bridge `br0`; node `i` is namespace `svcnet-<cluster>-node<i>`
//! with `eth0` = 172.18.0.(10+i)/24 on a veth to that bridge and a pod bridge
//! `svcpods0` = 10.244.i.1/24; the host gets one veth `svcnet-<cluster>` =
//! 172.18.0.1/24 on the bridge, routes to the pod /24s via the nodes and
//! `unreachable` routes for the pod and service networks. No default route
//! anywhere. All routes carry protocol [`rtnl::ROUTE_PROTO`].

pub mod cidr;
pub mod lab;
pub mod netns;
pub mod plan;
pub mod rtnl;

pub use cidr::Ipv4Net;
pub use lab::{LabError, Removed, create, destroy, destroy_cluster, down_all, leftovers};
pub use plan::{LabConfig, NodePlan, Plan, PlanError, Route, RouteKind, plan};
