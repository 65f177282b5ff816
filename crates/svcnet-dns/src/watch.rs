//! Feeds the tracker from kube-rs watchers on Services and EndpointSlices and publishes indexes.
//!
//! Bursts are coalesced: at most one publish per `PUBLISH_EVERY`, so a change shows within
//! that interval of the watch event while a relist of many objects costs one index copy.

use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use tokio::time::Instant;

use crate::convert;
use crate::index::{Resource, Shared, Tracker};

/// Minimum interval between two published indexes.
pub const PUBLISH_EVERY: Duration = Duration::from_millis(50);

enum Change {
    Service(Box<Event<Service>>),
    Slice(Box<Event<EndpointSlice>>),
}

/// Applies one Service watch event.
pub fn apply_service_event(t: &mut Tracker, ev: Event<Service>) {
    match ev {
        Event::Init => t.relist_start(Resource::Services),
        Event::InitDone => t.relist_done(Resource::Services),
        Event::Apply(s) | Event::InitApply(s) => match convert::service(&s) {
            Ok(spec) => t.apply_service(spec),
            // Not (yet) resolvable, e.g. no ClusterIP allocated: no records.
            Err(_) => {
                if let Ok(k) = convert::key_of_service(&s) {
                    t.delete_service(&k);
                }
            }
        },
        Event::Delete(s) => {
            if let Ok(k) = convert::key_of_service(&s) {
                t.delete_service(&k);
            }
        }
    }
}

/// Applies one EndpointSlice watch event.
pub fn apply_slice_event(t: &mut Tracker, ev: Event<EndpointSlice>) {
    match ev {
        Event::Init => t.relist_start(Resource::Slices),
        Event::InitDone => t.relist_done(Resource::Slices),
        Event::Apply(s) | Event::InitApply(s) => {
            if let Ok((svc, name)) = convert::slice_ids(&s) {
                t.apply_slice(&svc, &name, convert::slice(&s));
            }
        }
        Event::Delete(s) => {
            if let Ok((svc, name)) = convert::slice_ids(&s) {
                t.delete_slice(&svc, &name);
            }
        }
    }
}

/// Watches until the task is dropped; watch errors are retried with backoff by kube-runtime.
pub async fn run(client: kube::Client, shared: Arc<Shared>) {
    let cfg = watcher::Config::default();
    let services = watcher::watcher(kube::Api::<Service>::all(client.clone()), cfg.clone())
        .default_backoff()
        .map(|e| e.map(|e| Change::Service(Box::new(e))))
        .boxed();
    // A fresh watcher starts with a complete list (Init .. InitDone).
    let slices = || {
        watcher::watcher(kube::Api::<EndpointSlice>::all(client.clone()), cfg.clone())
            .default_backoff()
            .map(|e| e.map(|e| Change::Slice(Box::new(e))))
            .boxed()
    };
    let mut events = futures::stream::select(services, slices());
    let mut tracker = Tracker::new();
    let (mut services_synced, mut slices_synced) = (false, false);
    let mut next_publish = Instant::now();
    loop {
        let wait = tokio::time::sleep_until(next_publish);
        tokio::select! {
            ev = events.next() => {
                let Some(ev) = ev else { return };
                let mut ev = Some(ev);
                // Drain whatever is already buffered before deciding to publish.
                while let Some(e) = ev.take() {
                    match e {
                        Ok(Change::Service(e)) => {
                            services_synced |= matches!(*e, Event::InitDone);
                            apply_service_event(&mut tracker, *e);
                        }
                        Ok(Change::Slice(e)) => {
                            slices_synced |= matches!(*e, Event::InitDone);
                            apply_slice_event(&mut tracker, *e);
                        }
                        Err(e) => tracing::warn!(error = %e, "watch failed; retrying"),
                    }
                    ev = events.next().now_or_never().flatten();
                }
                if tracker.take_slice_relist() {
                    let (services, _) = events.into_inner();
                    events = futures::stream::select(services, slices());
                }
                if services_synced && slices_synced && !shared.synced() {
                    shared.publish(tracker.publish());
                    shared.set_synced();
                    next_publish = Instant::now() + PUBLISH_EVERY;
                }
            }
            _ = wait, if tracker.dirty() => {
                shared.publish(tracker.publish());
                next_publish = Instant::now() + PUBLISH_EVERY;
            }
        }
    }
}
