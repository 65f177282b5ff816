//! The compact, immutable record index that queries read, and the tracker that builds it from watch events.
//!
//! Queries hold an `Arc<Index>` and never wait on the watch: the tracker applies events to its
//! own copy-on-write view and publishes a new `Arc<Index>` in one pointer swap.

use std::borrow::Borrow;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

type Hasher64 = foldhash::fast::RandomState;

/// Transport protocol of a Service or endpoint port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Proto {
    Tcp,
    Udp,
    Sctp,
}

impl Proto {
    /// The SRV label (`_tcp`) without the underscore.
    pub fn label(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Sctp => "sctp",
        }
    }

    /// Parses the Kubernetes protocol field (`TCP` when absent).
    pub fn from_k8s(s: Option<&str>) -> Option<Proto> {
        match s.unwrap_or("TCP") {
            "TCP" => Some(Proto::Tcp),
            "UDP" => Some(Proto::Udp),
            "SCTP" => Some(Proto::Sctp),
            _ => None,
        }
    }
}

/// A named port, stored inline: IANA service names are at most 15 characters.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Port {
    name: [u8; 15],
    name_len: u8,
    pub proto: Proto,
    pub port: u16,
}

impl std::fmt::Debug for Port {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}:{}", self.name(), self.proto.label(), self.port)
    }
}

impl Port {
    /// A port with a name of at most 15 bytes; longer or empty names give `None`
    /// (such ports get no SRV record).
    pub fn new(name: &str, proto: Proto, port: u16) -> Option<Port> {
        let b = name.as_bytes();
        if b.is_empty() || b.len() > 15 {
            return None;
        }
        let mut n = [0u8; 15];
        n[..b.len()].copy_from_slice(b);
        for c in &mut n {
            c.make_ascii_lowercase();
        }
        Some(Port {
            name: n,
            name_len: b.len() as u8,
            proto,
            port,
        })
    }

    pub fn name(&self) -> &str {
        std::str::from_utf8(&self.name[..self.name_len as usize]).unwrap_or("")
    }
}

/// What a Service name resolves to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A ClusterIP (at most one per family).
    ClusterIp {
        v4: Option<Ipv4Addr>,
        v6: Option<Ipv6Addr>,
    },
    /// `clusterIP: None`: the ready endpoints.
    Headless,
    /// A CNAME to this (lowercase, no trailing dot) name.
    ExternalName(Box<str>),
}

/// One endpoint address from an EndpointSlice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub ip: IpAddr,
    pub hostname: Option<Box<str>>,
    pub ready: bool,
}

/// The DNS-relevant part of one EndpointSlice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slice {
    pub ports: Box<[Port]>,
    pub endpoints: Box<[Endpoint]>,
}

/// The DNS-relevant part of one Service, without its endpoints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceSpec {
    /// `<name>.<namespace>`, lowercase.
    pub key: Box<str>,
    pub kind: Kind,
    pub ports: Box<[Port]>,
    pub publish_not_ready: bool,
}

/// A Service as the index holds it: the spec plus, when headless, its slices.
#[derive(Debug)]
pub struct ServiceRec {
    pub spec: ServiceSpec,
    pub slices: Box<[Arc<Slice>]>,
}

impl ServiceRec {
    /// Endpoints that get DNS records: ready ones, or all with publishNotReadyAddresses.
    pub fn dns_endpoints(&self) -> impl Iterator<Item = (&Slice, &Endpoint)> + '_ {
        let all = self.spec.publish_not_ready;
        self.slices
            .iter()
            .flat_map(|s| s.endpoints.iter().map(move |e| (&**s, e)))
            .filter(move |(_, e)| all || e.ready)
    }

    pub fn name(&self) -> &str {
        self.spec
            .key
            .split_once('.')
            .map(|(n, _)| n)
            .unwrap_or(&self.spec.key)
    }

    pub fn namespace(&self) -> &str {
        self.spec.key.split_once('.').map(|(_, n)| n).unwrap_or("")
    }
}

/// A set entry that hashes and compares by the Service key, so lookups take a `&str`.
#[derive(Clone, Debug)]
struct Entry(Arc<ServiceRec>);

impl PartialEq for Entry {
    fn eq(&self, o: &Self) -> bool {
        self.0.spec.key == o.0.spec.key
    }
}
impl Eq for Entry {}
impl Hash for Entry {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.0.spec.key.hash(h)
    }
}
impl Borrow<str> for Entry {
    fn borrow(&self) -> &str {
        &self.0.spec.key
    }
}

/// What a PTR query for an address answers.
#[derive(Clone, Debug)]
pub enum PtrTarget {
    /// `<svc>.<ns>.svc.<zone>`
    Service(Arc<ServiceRec>),
    /// `<hostname>.<svc>.<ns>.svc.<zone>` for a headless endpoint.
    Endpoint(Arc<ServiceRec>),
}

/// An immutable snapshot of every record the server answers from.
#[derive(Clone, Debug, Default)]
pub struct Index {
    services: HashSet<Entry, Hasher64>,
    ptr: HashMap<IpAddr, PtrTarget, Hasher64>,
    namespaces: HashMap<Box<str>, u32, Hasher64>,
    /// SOA serial: bumped on every publish.
    pub serial: u32,
}

impl Index {
    /// The Service `<name>.<namespace>` (lowercase).
    pub fn service(&self, key: &str) -> Option<&Arc<ServiceRec>> {
        self.services.get(key).map(|e| &e.0)
    }

    pub fn ptr(&self, ip: &IpAddr) -> Option<&PtrTarget> {
        self.ptr.get(ip)
    }

    /// True when some Service lives in the namespace (so `<ns>.svc.<zone>` exists).
    pub fn has_namespace(&self, ns: &str) -> bool {
        self.namespaces.contains_key(ns)
    }

    pub fn len(&self) -> usize {
        self.services.len()
    }

    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
    }

    fn remove(&mut self, key: &str) {
        if let Some(Entry(old)) = self.services.take(key) {
            self.unlink(&old);
        }
    }

    fn unlink(&mut self, old: &Arc<ServiceRec>) {
        let same = |t: &PtrTarget| match t {
            PtrTarget::Service(r) | PtrTarget::Endpoint(r) => Arc::ptr_eq(r, old),
        };
        for ip in ptr_ips(old) {
            if self.ptr.get(&ip).is_some_and(same) {
                self.ptr.remove(&ip);
            }
        }
        let ns = old.namespace();
        if let Some(n) = self.namespaces.get_mut(ns) {
            *n -= 1;
            if *n == 0 {
                self.namespaces.remove(ns);
            }
        }
    }

    fn insert(&mut self, rec: ServiceRec) {
        self.remove(&rec.spec.key);
        let rec = Arc::new(rec);
        for ip in ptr_ips(&rec) {
            let t = match rec.spec.kind {
                Kind::Headless => PtrTarget::Endpoint(rec.clone()),
                _ => PtrTarget::Service(rec.clone()),
            };
            self.ptr.insert(ip, t);
        }
        *self.namespaces.entry(rec.namespace().into()).or_insert(0) += 1;
        self.services.insert(Entry(rec));
    }
}

/// Addresses whose PTR names this Service: its ClusterIPs, or its headless endpoints.
fn ptr_ips(r: &ServiceRec) -> Vec<IpAddr> {
    match &r.spec.kind {
        Kind::ClusterIp { v4, v6 } => v4
            .map(IpAddr::V4)
            .into_iter()
            .chain(v6.map(IpAddr::V6))
            .collect(),
        Kind::Headless => r.dns_endpoints().map(|(_, e)| e.ip).collect(),
        Kind::ExternalName(_) => Vec::new(),
    }
}

/// The published index plus a generation counter, shared by the tracker and the query workers.
#[derive(Debug, Default)]
pub struct Shared {
    current: RwLock<Arc<Index>>,
    generation: AtomicU64,
    synced: AtomicBool,
}

impl Shared {
    pub fn new() -> Arc<Shared> {
        Arc::new(Shared::default())
    }

    pub fn publish(&self, index: Arc<Index>) {
        // A poisoned lock only means a panicking writer; the pointer inside is still whole.
        let mut g = self.current.write().unwrap_or_else(|e| e.into_inner());
        *g = index;
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Marks the first complete list of every watched resource as published.
    pub fn set_synced(&self) {
        self.synced.store(true, Ordering::Release);
    }

    pub fn synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    pub fn load(&self) -> Arc<Index> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// A per-worker reader that touches the lock only when a new index was published.
    pub fn reader(self: &Arc<Self>) -> Reader {
        Reader {
            shared: self.clone(),
            seen: self.generation.load(Ordering::Acquire),
            cached: self.load(),
        }
    }
}

/// A worker's cached view of the published index.
#[derive(Debug)]
pub struct Reader {
    shared: Arc<Shared>,
    seen: u64,
    cached: Arc<Index>,
}

impl Reader {
    pub fn get(&mut self) -> &Index {
        let g = self.shared.generation.load(Ordering::Acquire);
        if g != self.seen {
            self.seen = g;
            self.cached = self.shared.load();
        }
        &self.cached
    }
}

/// Which watched resource a relist concerns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resource {
    Services,
    Slices,
}

/// A Service's slices by name; the data only where answers need it (see `Tracker`).
type SliceList = Vec<(Box<str>, Option<Arc<Slice>>)>;
/// (Service key, slice name).
type SliceKey = (Box<str>, Box<str>);

/// Applies Service and EndpointSlice changes and publishes indexes.
///
/// Slices are kept per Service key (the `kubernetes.io/service-name` label, which the
/// EndpointSlice controller never changes), shared by `Arc` with the index records. Only
/// headless Services answer from endpoints, so the slices of other Services are kept by name
/// only; should such a Service become headless, `take_slice_relist` asks for a fresh list.
///
/// The index is shared with the last published snapshot and copied only on the first change
/// after a publish, so in the steady state one copy of the tables exists.
#[derive(Debug, Default)]
pub struct Tracker {
    index: Arc<Index>,
    specs_seen: Option<HashSet<Box<str>, Hasher64>>,
    slices: HashMap<Box<str>, SliceList, Hasher64>,
    slices_seen: Option<HashSet<SliceKey, Hasher64>>,
    dirty: bool,
    relist_slices: bool,
}

impl Tracker {
    pub fn new() -> Tracker {
        Tracker::default()
    }

    /// True when changes were applied since the last `publish`.
    pub fn dirty(&self) -> bool {
        self.dirty
    }

    /// A Service was added or changed.
    pub fn apply_service(&mut self, spec: ServiceSpec) {
        if let Some(seen) = &mut self.specs_seen {
            seen.insert(spec.key.clone());
        }
        if self
            .index
            .service(&spec.key)
            .is_some_and(|r| r.spec == spec)
        {
            return;
        }
        if let Some(list) = self.slices.get_mut(&*spec.key) {
            if spec.kind == Kind::Headless {
                // Slices seen while the Service was not headless were kept without data.
                self.relist_slices |= list.iter().any(|(_, s)| s.is_none());
            } else {
                list.iter_mut().for_each(|(_, s)| *s = None);
            }
        }
        let slices = self.slices_for(&spec.key);
        Arc::make_mut(&mut self.index).insert(ServiceRec { spec, slices });
        self.dirty = true;
    }

    pub fn delete_service(&mut self, key: &str) {
        if self.index.service(key).is_some() {
            Arc::make_mut(&mut self.index).remove(key);
            self.dirty = true;
        }
    }

    /// True once after a Service became headless while some of its slices were kept without
    /// data: the caller should relist EndpointSlices (`relist_start` .. `relist_done`).
    pub fn take_slice_relist(&mut self) -> bool {
        std::mem::take(&mut self.relist_slices)
    }

    /// An EndpointSlice `name` of Service `service_key` was added or changed.
    pub fn apply_slice(&mut self, service_key: &str, name: &str, slice: Slice) {
        if let Some(seen) = &mut self.slices_seen {
            seen.insert((service_key.into(), name.into()));
        }
        // Unknown Services keep the data: the Service may turn out headless.
        let keep = self
            .index
            .service(service_key)
            .is_none_or(|r| r.spec.kind == Kind::Headless);
        let data = keep.then_some(slice);
        let list = self.slices.entry(service_key.into()).or_default();
        match list.iter_mut().find(|(n, _)| &**n == name) {
            Some((_, s)) if s.as_deref() == data.as_ref() => return,
            Some((_, s)) => *s = data.map(Arc::new),
            None => list.push((name.into(), data.map(Arc::new))),
        }
        if keep {
            self.refresh(service_key);
        }
    }

    pub fn delete_slice(&mut self, service_key: &str, name: &str) {
        let Some(list) = self.slices.get_mut(service_key) else {
            return;
        };
        let before = list.len();
        list.retain(|(n, _)| &**n != name);
        if list.len() == before {
            return;
        }
        if list.is_empty() {
            self.slices.remove(service_key);
        }
        self.refresh(service_key);
    }

    /// A relist started: everything not re-applied before `relist_done` is removed.
    pub fn relist_start(&mut self, what: Resource) {
        match what {
            Resource::Services => self.specs_seen = Some(HashSet::default()),
            Resource::Slices => self.slices_seen = Some(HashSet::default()),
        }
    }

    pub fn relist_done(&mut self, what: Resource) {
        match what {
            Resource::Services => {
                let Some(seen) = self.specs_seen.take() else {
                    return;
                };
                let gone: Vec<Box<str>> = self
                    .index
                    .services
                    .iter()
                    .filter(|e| !seen.contains(&*e.0.spec.key))
                    .map(|e| e.0.spec.key.clone())
                    .collect();
                for k in gone {
                    self.delete_service(&k);
                }
            }
            Resource::Slices => {
                let Some(seen) = self.slices_seen.take() else {
                    return;
                };
                let gone: Vec<SliceKey> = self
                    .slices
                    .iter()
                    .flat_map(|(svc, l)| l.iter().map(move |(n, _)| (svc.clone(), n.clone())))
                    .filter(|k| !seen.contains(k))
                    .collect();
                for (svc, n) in gone {
                    self.delete_slice(&svc, &n);
                }
            }
        }
    }

    /// The index as of now; clears the dirty flag.
    pub fn publish(&mut self) -> Arc<Index> {
        self.dirty = false;
        let ix = Arc::make_mut(&mut self.index);
        ix.serial = ix.serial.wrapping_add(1);
        self.index.clone()
    }

    fn slices_for(&self, key: &str) -> Box<[Arc<Slice>]> {
        self.slices
            .get(key)
            .map(|l| l.iter().filter_map(|(_, s)| s.clone()).collect())
            .unwrap_or_default()
    }

    fn refresh(&mut self, key: &str) {
        // Only headless Services answer from endpoints; others keep their record as is.
        let Some(old) = self.index.service(key) else {
            return;
        };
        if old.spec.kind != Kind::Headless {
            return;
        }
        let spec = old.spec.clone();
        let slices = self.slices_for(key);
        Arc::make_mut(&mut self.index).insert(ServiceRec { spec, slices });
        self.dirty = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(key: &str, kind: Kind) -> ServiceSpec {
        ServiceSpec {
            key: key.into(),
            kind,
            ports: vec![Port::new("http", Proto::Tcp, 80).unwrap()].into(),
            publish_not_ready: false,
        }
    }

    fn ep(ip: &str, host: Option<&str>, ready: bool) -> Endpoint {
        Endpoint {
            ip: ip.parse().unwrap(),
            hostname: host.map(Into::into),
            ready,
        }
    }

    fn slice(eps: Vec<Endpoint>) -> Slice {
        Slice {
            ports: vec![Port::new("http", Proto::Tcp, 8080).unwrap()].into(),
            endpoints: eps.into(),
        }
    }

    fn ptr_of(ix: &Index, ip: &str) -> Option<String> {
        ix.ptr(&ip.parse().unwrap()).map(|t| match t {
            PtrTarget::Service(r) => format!("svc {}", r.spec.key),
            PtrTarget::Endpoint(r) => format!("ep {}", r.spec.key),
        })
    }

    #[test]
    fn ports_are_inline_and_bounded() {
        let cases: &[(&str, Option<&str>)] = &[
            ("http", Some("http")),
            ("HTTP", Some("http")),
            ("a-very-long-nam", Some("a-very-long-nam")),
            ("a-very-long-name", None),
            ("", None),
        ];
        for (name, want) in cases {
            assert_eq!(
                Port::new(name, Proto::Tcp, 1)
                    .map(|p| p.name().to_string())
                    .as_deref(),
                *want,
                "{name}"
            );
        }
    }

    #[test]
    fn slices_before_and_after_the_service() {
        let mut t = Tracker::new();
        t.apply_slice(
            "web.default",
            "web-abc",
            slice(vec![ep("10.244.0.5", Some("w0"), true)]),
        );
        t.apply_service(spec("web.default", Kind::Headless));
        t.apply_slice(
            "web.default",
            "web-def",
            slice(vec![ep("10.244.0.6", None, false)]),
        );
        let ix = t.publish();
        let r = ix.service("web.default").unwrap();
        let ready: Vec<String> = r.dns_endpoints().map(|(_, e)| e.ip.to_string()).collect();
        assert_eq!(ready, ["10.244.0.5"]);
        assert_eq!(ptr_of(&ix, "10.244.0.5").as_deref(), Some("ep web.default"));
        assert_eq!(ptr_of(&ix, "10.244.0.6"), None);
        assert!(ix.has_namespace("default"));

        t.delete_slice("web.default", "web-abc");
        let ix = t.publish();
        assert_eq!(
            ix.service("web.default").unwrap().dns_endpoints().count(),
            0
        );
        assert_eq!(ptr_of(&ix, "10.244.0.5"), None);
    }

    #[test]
    fn type_change_and_delete_update_ptr_and_namespaces() {
        let mut t = Tracker::new();
        t.apply_service(spec("x.ns1", Kind::ExternalName("example.org".into())));
        assert_eq!(ptr_of(&t.publish(), "10.96.0.20"), None);
        t.apply_service(spec(
            "x.ns1",
            Kind::ClusterIp {
                v4: Some("10.96.0.20".parse().unwrap()),
                v6: None,
            },
        ));
        let ix = t.publish();
        assert_eq!(ptr_of(&ix, "10.96.0.20").as_deref(), Some("svc x.ns1"));
        t.delete_service("x.ns1");
        let ix2 = t.publish();
        assert_eq!(ptr_of(&ix2, "10.96.0.20"), None);
        assert!(!ix2.has_namespace("ns1"));
        // The earlier snapshot is untouched: readers holding it see a consistent view.
        assert!(ix.service("x.ns1").is_some());
    }

    #[test]
    fn no_op_changes_do_not_dirty() {
        let mut t = Tracker::new();
        t.apply_service(spec("a.b", Kind::Headless));
        t.publish();
        t.apply_service(spec("a.b", Kind::Headless));
        assert!(!t.dirty());
        t.apply_slice("a.b", "s", slice(vec![]));
        assert!(t.dirty());
        t.publish();
        t.apply_slice("a.b", "s", slice(vec![]));
        assert!(!t.dirty());
    }

    #[test]
    fn relist_removes_what_was_not_seen() {
        let mut t = Tracker::new();
        t.apply_service(spec("a.n", Kind::Headless));
        t.apply_service(spec("b.n", Kind::Headless));
        t.apply_slice("a.n", "a-1", slice(vec![ep("10.0.0.1", None, true)]));
        t.apply_slice("a.n", "a-2", slice(vec![ep("10.0.0.2", None, true)]));
        t.relist_start(Resource::Services);
        t.relist_start(Resource::Slices);
        t.apply_service(spec("a.n", Kind::Headless));
        t.apply_slice("a.n", "a-2", slice(vec![ep("10.0.0.2", None, true)]));
        t.relist_done(Resource::Services);
        t.relist_done(Resource::Slices);
        let ix = t.publish();
        assert!(ix.service("b.n").is_none());
        let ips: Vec<String> = ix
            .service("a.n")
            .unwrap()
            .dns_endpoints()
            .map(|(_, e)| e.ip.to_string())
            .collect();
        assert_eq!(ips, ["10.0.0.2"]);
    }

    #[test]
    fn slices_of_non_headless_services_are_kept_by_name_only() {
        let ips = |ix: &Index| -> Vec<String> {
            ix.service("a.n")
                .unwrap()
                .dns_endpoints()
                .map(|(_, e)| e.ip.to_string())
                .collect()
        };
        let cluster_ip = Kind::ClusterIp {
            v4: Some("10.96.0.1".parse().unwrap()),
            v6: None,
        };
        let mut t = Tracker::new();
        // Before the Service is known the data is kept; a ClusterIP Service drops it.
        t.apply_slice("a.n", "a-1", slice(vec![ep("10.0.0.1", None, true)]));
        t.apply_service(spec("a.n", cluster_ip.clone()));
        assert!(t.slices["a.n"].iter().all(|(_, s)| s.is_none()));
        t.apply_slice("a.n", "a-2", slice(vec![ep("10.0.0.2", None, true)]));
        assert!(t.slices["a.n"].iter().all(|(_, s)| s.is_none()));
        assert!(!t.take_slice_relist());
        // Turning headless asks for a relist, which brings the endpoints back.
        t.apply_service(spec("a.n", Kind::Headless));
        assert!(t.take_slice_relist());
        assert!(!t.take_slice_relist());
        assert!(ips(&t.publish()).is_empty());
        t.relist_start(Resource::Slices);
        t.apply_slice("a.n", "a-2", slice(vec![ep("10.0.0.2", None, true)]));
        t.relist_done(Resource::Slices);
        assert_eq!(ips(&t.publish()), ["10.0.0.2"]);
        // A headless Service's slices keep their data, so no relist is needed later.
        t.apply_service(spec("b.n", Kind::Headless));
        t.apply_slice("b.n", "b-1", slice(vec![ep("10.0.0.3", None, true)]));
        t.apply_service(spec("b.n", Kind::Headless));
        assert!(!t.take_slice_relist());
    }

    #[test]
    fn reader_sees_new_publications() {
        let shared = Shared::new();
        let mut r = shared.reader();
        assert!(r.get().is_empty());
        let mut t = Tracker::new();
        t.apply_service(spec("a.n", Kind::Headless));
        shared.publish(t.publish());
        assert_eq!(r.get().len(), 1);
    }
}
