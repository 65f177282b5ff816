//! Fuzzes the query parser and answer logic: any packet gets a parsable reply, a forward, or a drop.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use svcnet_dns::answer::{Outcome, Transport, Zone, answer};
use svcnet_dns::index::{Endpoint, Index, Kind, Port, Proto, ServiceSpec, Slice, Tracker};

fn fixture() -> &'static (Index, Zone) {
    static F: OnceLock<(Index, Zone)> = OnceLock::new();
    F.get_or_init(|| {
        let mut t = Tracker::new();
        let ports: Box<[Port]> = Port::new("http", Proto::Tcp, 80).into_iter().collect();
        t.apply_service(ServiceSpec {
            key: "web.default".into(),
            kind: Kind::ClusterIp {
                v4: Some([10, 96, 0, 5].into()),
                v6: None,
            },
            ports: ports.clone(),
            publish_not_ready: false,
        });
        t.apply_service(ServiceSpec {
            key: "db.default".into(),
            kind: Kind::Headless,
            ports: ports.clone(),
            publish_not_ready: false,
        });
        t.apply_slice(
            "db.default",
            "db-1",
            Slice {
                ports,
                endpoints: vec![Endpoint {
                    ip: [10, 244, 0, 5].into(),
                    hostname: Some("db-0".into()),
                    ready: true,
                }]
                .into(),
            },
        );
        t.apply_service(ServiceSpec {
            key: "ext.default".into(),
            kind: Kind::ExternalName("web.default.svc.cluster.local".into()),
            ports: [].into(),
            publish_not_ready: false,
        });
        let zone = Zone::new("cluster.local", 5).expect("zone");
        ((*t.publish()).clone(), zone)
    })
}

fuzz_target!(|data: &[u8]| {
    let (ix, zone) = fixture();
    for tr in [Transport::Udp, Transport::Tcp] {
        if let Outcome::Reply(b) = answer(ix, zone, data, tr).outcome {
            assert!(
                hickory_proto::op::Message::from_vec(&b).is_ok(),
                "our reply parses"
            );
        }
    }
});
