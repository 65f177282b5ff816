//! Decoding of Kubernetes protobuf request bodies into JSON objects.
//!
//! `kubectl create` sends `k8s\0` followed by a `runtime.Unknown` envelope whose `raw` bytes are
//! the generated.proto message of the kind. We decode it with the `k8s-pb` prost types and turn
//! it into the JSON that k8s-openapi (v1_33) produces for the same object, so the rest of the
//! server sees one shape whatever the wire format was.
//!
//! Go always writes non-pointer fields to the wire, so an unset `type` arrives as `""` and an
//! unset `healthCheckNodePort` as `0`. A Go server decodes those into zero values that its JSON
//! encoder then drops (`omitempty`); we do the same: scalars of Go value fields with `omitempty`
//! are left out when zero, while Go pointer fields and required fields (`keep` below) are kept as
//! sent. Fields newer than Kubernetes 1.33 are skipped, as a 1.33 server skips unknown protobuf
//! fields. Not converted (dropped, a deviation from upstream): `managedFields` and the deprecated
//! in-tree volume sources (awsElasticBlockStore, azureDisk, azureFile, cephfs, cinder, fc,
//! flexVolume, flocker, gcePersistentDisk, gitRepo, glusterfs, iscsi, photonPersistentDisk,
//! portworxVolume, quobyte, rbd, scaleIO, storageos, vsphereVolume).

use std::borrow::Cow;
use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use k8s_openapi::jiff::Timestamp;
use k8s_pb::api::apps::v1 as appsv1;
use k8s_pb::api::coordination::v1 as coordinationv1;
use k8s_pb::api::core::v1 as corev1;
use k8s_pb::api::discovery::v1 as discoveryv1;
use k8s_pb::apimachinery::pkg::api::resource::Quantity;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as metav1;
use k8s_pb::apimachinery::pkg::runtime::Unknown;
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use prost::Message;
use serde_json::{Map, Value};

/// The four bytes that start every Kubernetes protobuf body.
const MAGIC: &[u8] = b"k8s\0";

/// Why a protobuf body could not be turned into a JSON object.
#[derive(Debug, thiserror::Error)]
pub enum ProtobufError {
    #[error("protobuf body does not start with the k8s\\0 magic")]
    Magic,
    #[error("invalid protobuf envelope (runtime.Unknown): {0}")]
    Envelope(#[source] prost::DecodeError),
    #[error("protobuf body does not name its apiVersion and kind")]
    MissingTypeMeta,
    #[error("unsupported content encoding in protobuf body: {0:?}")]
    ContentEncoding(String),
    #[error("unsupported kind in protobuf body: {api_version}/{kind}")]
    UnsupportedKind { api_version: String, kind: String },
    #[error("invalid protobuf for {api_version}/{kind}: {source}")]
    Invalid {
        api_version: String,
        kind: String,
        #[source]
        source: prost::DecodeError,
    },
    #[error("invalid timestamp in protobuf body: {seconds}s {nanos}ns")]
    Timestamp { seconds: i64, nanos: i32 },
}

type Result<T, E = ProtobufError> = std::result::Result<T, E>;

/// Decodes a `application/vnd.kubernetes.protobuf` body into the object's JSON form, with
/// `apiVersion` and `kind` taken from the envelope.
pub fn decode(body: &[u8]) -> Result<Value> {
    let rest = body.strip_prefix(MAGIC).ok_or(ProtobufError::Magic)?;
    let envelope = Unknown::decode(rest).map_err(ProtobufError::Envelope)?;
    let type_meta = envelope.type_meta.unwrap_or_default();
    let api_version = type_meta.api_version.unwrap_or_default();
    let kind = type_meta.kind.unwrap_or_default();
    if api_version.is_empty() || kind.is_empty() {
        return Err(ProtobufError::MissingTypeMeta);
    }
    // Upstream only ever writes raw bytes without an encoding; anything else we cannot read.
    if let Some(encoding) = envelope.content_encoding.filter(|e| !e.is_empty()) {
        return Err(ProtobufError::ContentEncoding(encoding));
    }
    let raw = envelope.raw.unwrap_or_default();
    let convert = match (api_version.as_str(), kind.as_str()) {
        ("v1", "Namespace") => convert::<corev1::Namespace>,
        ("v1", "Service") => convert::<corev1::Service>,
        ("v1", "Pod") => convert::<corev1::Pod>,
        ("v1", "Endpoints") => convert::<corev1::Endpoints>,
        ("v1", "Node") => convert::<corev1::Node>,
        ("v1", "Event") => convert::<corev1::Event>,
        ("apps/v1", "Deployment") => convert::<appsv1::Deployment>,
        ("apps/v1", "ReplicaSet") => convert::<appsv1::ReplicaSet>,
        ("discovery.k8s.io/v1", "EndpointSlice") => convert::<discoveryv1::EndpointSlice>,
        ("coordination.k8s.io/v1", "Lease") => convert::<coordinationv1::Lease>,
        _ => return Err(ProtobufError::UnsupportedKind { api_version, kind }),
    };
    let mut object = convert(&raw).map_err(|source| ProtobufError::Invalid {
        api_version: api_version.clone(),
        kind: kind.clone(),
        source,
    })??;
    object.insert("apiVersion".to_owned(), Value::String(api_version));
    object.insert("kind".to_owned(), Value::String(kind));
    Ok(Value::Object(object))
}

/// Decodes one kind's message; the outer error is the protobuf's, the inner one the JSON's.
fn convert<M: Message + Default + Json>(
    raw: &[u8],
) -> Result<Result<Map<String, Value>>, prost::DecodeError> {
    let message = M::decode(raw)?;
    Ok(message.json().map(|object| match object {
        Some(Value::Object(object)) => object,
        _ => Map::new(),
    }))
}

/// A protobuf value with a JSON form.
trait Json {
    /// The JSON value, or `None` when the value stands for "unset" (a zero Time).
    fn json(&self) -> Result<Option<Value>>;
    /// Whether Go's `omitempty` drops this value.
    fn is_zero(&self) -> bool {
        false
    }
}

macro_rules! scalar_json {
    ($($ty:ty => $zero:expr),* $(,)?) => {$(
        impl Json for $ty {
            fn json(&self) -> Result<Option<Value>> {
                Ok(Some(Value::from(self.clone())))
            }
            fn is_zero(&self) -> bool {
                *self == $zero
            }
        }
    )*};
}
scalar_json!(String => "", i32 => 0, i64 => 0, bool => false);

/// Go's zero `time.Time` (0001-01-01T00:00:00Z) in Unix seconds, which means "unset".
const GO_ZERO_TIME: i64 = -62_135_596_800;

fn timestamp(seconds: Option<i64>, nanos: Option<i32>) -> Result<Option<Timestamp>> {
    // Go writes an unset Time as an empty message.
    if seconds.is_none() && nanos.is_none() || seconds == Some(GO_ZERO_TIME) {
        return Ok(None);
    }
    let (seconds, nanos) = (seconds.unwrap_or(0), nanos.unwrap_or(0));
    Timestamp::new(seconds, nanos)
        .map(Some)
        .map_err(|_| ProtobufError::Timestamp { seconds, nanos })
}

/// Serializes through k8s-openapi's own type so the text is exactly its format.
fn to_value(
    value: impl serde::Serialize,
    seconds: Option<i64>,
    nanos: Option<i32>,
) -> Result<Value> {
    serde_json::to_value(value).map_err(|_| ProtobufError::Timestamp {
        seconds: seconds.unwrap_or(0),
        nanos: nanos.unwrap_or(0),
    })
}

impl Json for metav1::Time {
    fn json(&self) -> Result<Option<Value>> {
        timestamp(self.seconds, self.nanos)?
            .map(|t| to_value(Time(t), self.seconds, self.nanos))
            .transpose()
    }
}

impl Json for metav1::MicroTime {
    fn json(&self) -> Result<Option<Value>> {
        timestamp(self.seconds, self.nanos)?
            .map(|t| to_value(MicroTime(t), self.seconds, self.nanos))
            .transpose()
    }
}

impl Json for Quantity {
    fn json(&self) -> Result<Option<Value>> {
        // Go's zero Quantity prints as "0".
        let text = self
            .string
            .as_deref()
            .filter(|s| !s.is_empty())
            .unwrap_or("0");
        Ok(Some(Value::from(text)))
    }
}

impl Json for IntOrString {
    fn json(&self) -> Result<Option<Value>> {
        // Type 1 is a string; anything else is read as an int, as Go does.
        Ok(Some(match self.r#type {
            Some(1) => Value::from(self.str_val.clone().unwrap_or_default()),
            _ => Value::from(self.int_val.unwrap_or(0)),
        }))
    }
}

/// A message field: optional, repeated or map.
trait Field {
    /// The field's JSON value; `keep` disables Go's `omitempty` for zero scalars and empty lists.
    fn field(&self, keep: bool) -> Result<Option<Value>>;
}

impl<T: Json> Field for Option<T> {
    fn field(&self, keep: bool) -> Result<Option<Value>> {
        match self {
            Some(value) if keep || !value.is_zero() => value.json(),
            _ => Ok(None),
        }
    }
}

impl<T: Json> Field for Vec<T> {
    fn field(&self, keep: bool) -> Result<Option<Value>> {
        if self.is_empty() && !keep {
            return Ok(None);
        }
        let items = self
            .iter()
            .map(|item| Ok(item.json()?.unwrap_or(Value::Null)));
        Ok(Some(Value::Array(items.collect::<Result<_>>()?)))
    }
}

impl<T: Json> Field for BTreeMap<String, T> {
    fn field(&self, keep: bool) -> Result<Option<Value>> {
        if self.is_empty() && !keep {
            return Ok(None);
        }
        let entries = self
            .iter()
            .map(|(key, item)| Ok((key.clone(), item.json()?.unwrap_or(Value::Null))));
        Ok(Some(Value::Object(entries.collect::<Result<_>>()?)))
    }
}

/// How a field is written into its object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// A Go value field with `omitempty`: zero scalars and empty lists are left out.
    OmitZero,
    /// A Go pointer or a required field: written whenever it was sent.
    Keep,
    /// An embedded Go struct (`json:",inline"`): its fields go into the parent object.
    Inline,
}

fn put(
    object: &mut Map<String, Value>,
    name: Cow<'static, str>,
    field: &impl Field,
    mode: Mode,
) -> Result<()> {
    match (mode, field.field(mode != Mode::OmitZero)?) {
        (Mode::Inline, Some(Value::Object(inner))) => object.extend(inner),
        (_, Some(value)) => {
            object.insert(name.into_owned(), value);
        }
        (_, None) => {}
    }
    Ok(())
}

/// The JSON name of a field: the explicit one, or the lowerCamelCase form of the Rust name.
fn json_name(explicit: &[&'static str], rust: &'static str) -> Cow<'static, str> {
    if let Some(name) = explicit.first() {
        return Cow::Borrowed(name);
    }
    let rust = rust.strip_prefix("r#").unwrap_or(rust);
    if !rust.contains('_') {
        return Cow::Borrowed(rust);
    }
    let mut name = String::with_capacity(rust.len());
    for (i, part) in rust.split('_').enumerate() {
        let mut chars = part.chars();
        match chars.next() {
            Some(first) if i > 0 => name.extend(first.to_uppercase().chain(chars)),
            _ => name.push_str(part),
        }
    }
    Cow::Owned(name)
}

macro_rules! mode {
    () => {
        Mode::OmitZero
    };
    (keep) => {
        Mode::Keep
    };
    (inline) => {
        Mode::Inline
    };
}

/// One row per message: its fields, with a JSON name where lowerCamelCase is wrong and a mode.
macro_rules! messages {
    ($(
        $module:ident::$ty:ident { $($field:ident $(= $json:literal)? $(: $mode:ident)?),* $(,)? }
    )*) => {$(
        impl Json for $module::$ty {
            fn json(&self) -> Result<Option<Value>> {
                let mut object = Map::new();
                $(
                    let name = json_name(&[$($json)?], stringify!($field));
                    put(&mut object, name, &self.$field, mode!($($mode)?))?;
                )*
                Ok(Some(Value::Object(object)))
            }
        }
    )*};
}

// Generated from the Go types (json tags, pointer or not) of Kubernetes, matched to the k8s-pb
// fields by protobuf tag number and limited to the fields k8s-openapi v1_33 knows.
messages! {
    appsv1::Deployment { metadata, spec, status }
    appsv1::DeploymentCondition {
        r#type: keep, status: keep, last_update_time, last_transition_time, reason, message
    }
    appsv1::DeploymentSpec {
        replicas: keep, selector, template, strategy, min_ready_seconds,
        revision_history_limit: keep, paused, progress_deadline_seconds: keep
    }
    appsv1::DeploymentStatus {
        observed_generation, replicas, updated_replicas, ready_replicas, available_replicas,
        unavailable_replicas, terminating_replicas: keep, conditions, collision_count: keep
    }
    appsv1::DeploymentStrategy { r#type, rolling_update }
    appsv1::ReplicaSet { metadata, spec, status }
    appsv1::ReplicaSetCondition {
        r#type: keep, status: keep, last_transition_time, reason, message
    }
    appsv1::ReplicaSetSpec { replicas: keep, min_ready_seconds, selector, template }
    appsv1::ReplicaSetStatus {
        replicas: keep, fully_labeled_replicas, ready_replicas, available_replicas,
        terminating_replicas: keep, observed_generation, conditions
    }
    appsv1::RollingUpdateDeployment { max_unavailable, max_surge }
    coordinationv1::Lease { metadata, spec }
    coordinationv1::LeaseSpec {
        holder_identity: keep, lease_duration_seconds: keep, acquire_time, renew_time,
        lease_transitions: keep, strategy: keep, preferred_holder: keep
    }
    corev1::Affinity { node_affinity, pod_affinity, pod_anti_affinity }
    corev1::AppArmorProfile { r#type: keep, localhost_profile: keep }
    corev1::AttachedVolume { name: keep, device_path: keep }
    corev1::CSIVolumeSource {
        driver: keep, read_only: keep, fs_type: keep, volume_attributes, node_publish_secret_ref
    }
    corev1::Capabilities { add, drop }
    corev1::ClientIpConfig { timeout_seconds: keep }
    corev1::ClusterTrustBundleProjection {
        name: keep, signer_name: keep, label_selector, optional: keep, path: keep
    }
    corev1::ConfigMapEnvSource { local_object_reference: inline, optional: keep }
    corev1::ConfigMapKeySelector { local_object_reference: inline, key: keep, optional: keep }
    corev1::ConfigMapNodeConfigSource {
        namespace: keep, name: keep, uid, resource_version, kubelet_config_key: keep
    }
    corev1::ConfigMapProjection { local_object_reference: inline, items, optional: keep }
    corev1::ConfigMapVolumeSource {
        local_object_reference: inline, items, default_mode: keep, optional: keep
    }
    corev1::Container {
        name: keep, image, command, args, working_dir, ports, env_from, env, resources,
        resize_policy, restart_policy: keep, volume_mounts, volume_devices, liveness_probe,
        readiness_probe, startup_probe, lifecycle, termination_message_path,
        termination_message_policy, image_pull_policy, security_context, stdin, stdin_once, tty
    }
    corev1::ContainerImage { names: keep, size_bytes }
    corev1::ContainerPort { name, host_port, container_port: keep, protocol, host_ip = "hostIP" }
    corev1::ContainerResizePolicy { resource_name: keep, restart_policy: keep }
    corev1::ContainerState { waiting, running, terminated }
    corev1::ContainerStateRunning { started_at }
    corev1::ContainerStateTerminated {
        exit_code: keep, signal, reason, message, started_at, finished_at,
        container_id = "containerID"
    }
    corev1::ContainerStateWaiting { reason, message }
    corev1::ContainerStatus {
        name: keep, state, last_state, ready: keep, restart_count: keep, image: keep,
        image_id = "imageID": keep, container_id = "containerID", started: keep,
        allocated_resources, resources, volume_mounts, user, allocated_resources_status,
        stop_signal: keep
    }
    corev1::ContainerUser { linux }
    corev1::DaemonEndpoint { port = "Port": keep }
    corev1::DownwardAPIProjection { items }
    corev1::DownwardAPIVolumeFile { path: keep, field_ref, resource_field_ref, mode: keep }
    corev1::DownwardAPIVolumeSource { items, default_mode: keep }
    corev1::EmptyDirVolumeSource { medium, size_limit }
    corev1::EndpointAddress { ip: keep, hostname, node_name: keep, target_ref }
    corev1::EndpointPort { name, port: keep, protocol, app_protocol: keep }
    corev1::EndpointSubset { addresses, not_ready_addresses, ports }
    corev1::Endpoints { metadata, subsets }
    corev1::EnvFromSource { prefix, config_map_ref, secret_ref }
    corev1::EnvVar { name: keep, value, value_from }
    corev1::EnvVarSource { field_ref, resource_field_ref, config_map_key_ref, secret_key_ref }
    corev1::EphemeralContainer { ephemeral_container_common: inline, target_container_name }
    corev1::EphemeralContainerCommon {
        name: keep, image, command, args, working_dir, ports, env_from, env, resources,
        resize_policy, restart_policy: keep, volume_mounts, volume_devices, liveness_probe,
        readiness_probe, startup_probe, lifecycle, termination_message_path,
        termination_message_policy, image_pull_policy, security_context, stdin, stdin_once, tty
    }
    corev1::EphemeralVolumeSource { volume_claim_template }
    corev1::Event {
        metadata, involved_object, reason, message, source, first_timestamp, last_timestamp, count,
        r#type, event_time, series, action, related, reporting_component: keep,
        reporting_instance: keep
    }
    corev1::EventSeries { count, last_observed_time }
    corev1::EventSource { component, host }
    corev1::ExecAction { command }
    corev1::GrpcAction { port: keep, service: keep }
    corev1::HostAlias { ip: keep, hostnames }
    corev1::HostIp { ip: keep }
    corev1::HostPathVolumeSource { path: keep, r#type: keep }
    corev1::HttpGetAction { path, port, host, scheme, http_headers }
    corev1::HttpHeader { name: keep, value: keep }
    corev1::ImageVolumeSource { reference, pull_policy }
    corev1::KeyToPath { key: keep, path: keep, mode: keep }
    corev1::Lifecycle { post_start, pre_stop, stop_signal: keep }
    corev1::LifecycleHandler { exec, http_get, tcp_socket, sleep }
    corev1::LinuxContainerUser { uid: keep, gid: keep, supplemental_groups }
    corev1::LoadBalancerIngress { ip, hostname, ip_mode: keep, ports }
    corev1::LoadBalancerStatus { ingress }
    corev1::LocalObjectReference { name }
    corev1::Namespace { metadata, spec, status }
    corev1::NamespaceCondition { r#type: keep, status: keep, last_transition_time, reason, message }
    corev1::NamespaceSpec { finalizers }
    corev1::NamespaceStatus { phase, conditions }
    corev1::NfsVolumeSource { server: keep, path: keep, read_only }
    corev1::Node { metadata, spec, status }
    corev1::NodeAddress { r#type: keep, address: keep }
    corev1::NodeAffinity {
        required_during_scheduling_ignored_during_execution,
        preferred_during_scheduling_ignored_during_execution
    }
    corev1::NodeCondition {
        r#type: keep, status: keep, last_heartbeat_time, last_transition_time, reason, message
    }
    corev1::NodeConfigSource { config_map }
    corev1::NodeConfigStatus { assigned, active, last_known_good, error }
    corev1::NodeDaemonEndpoints { kubelet_endpoint }
    corev1::NodeFeatures { supplemental_groups_policy: keep }
    corev1::NodeRuntimeHandler { name: keep, features }
    corev1::NodeRuntimeHandlerFeatures { recursive_read_only_mounts: keep, user_namespaces: keep }
    corev1::NodeSelector { node_selector_terms: keep }
    corev1::NodeSelectorRequirement { key: keep, operator: keep, values }
    corev1::NodeSelectorTerm { match_expressions, match_fields }
    corev1::NodeSpec {
        pod_cidr = "podCIDR", pod_cid_rs = "podCIDRs", provider_id = "providerID", unschedulable,
        taints, config_source, external_id = "externalID"
    }
    corev1::NodeStatus {
        capacity, allocatable, phase, conditions, addresses, daemon_endpoints, node_info, images,
        volumes_in_use, volumes_attached, config, runtime_handlers, features
    }
    corev1::NodeSwapStatus { capacity: keep }
    corev1::NodeSystemInfo {
        machine_id = "machineID": keep, system_uuid = "systemUUID": keep, boot_id = "bootID": keep,
        kernel_version: keep, os_image: keep, container_runtime_version: keep,
        kubelet_version: keep, kube_proxy_version: keep, operating_system: keep, architecture: keep,
        swap
    }
    corev1::ObjectFieldSelector { api_version, field_path: keep }
    corev1::ObjectReference {
        kind, namespace, name, uid, api_version, resource_version, field_path
    }
    corev1::PersistentVolumeClaimSpec {
        access_modes, selector, resources, volume_name, storage_class_name: keep, volume_mode: keep,
        data_source, data_source_ref, volume_attributes_class_name: keep
    }
    corev1::PersistentVolumeClaimTemplate { metadata, spec }
    corev1::PersistentVolumeClaimVolumeSource { claim_name: keep, read_only }
    corev1::Pod { metadata, spec, status }
    corev1::PodAffinity {
        required_during_scheduling_ignored_during_execution,
        preferred_during_scheduling_ignored_during_execution
    }
    corev1::PodAffinityTerm {
        label_selector, namespaces, topology_key: keep, namespace_selector, match_label_keys,
        mismatch_label_keys
    }
    corev1::PodAntiAffinity {
        required_during_scheduling_ignored_during_execution,
        preferred_during_scheduling_ignored_during_execution
    }
    corev1::PodCondition {
        r#type: keep, observed_generation, status: keep, last_probe_time, last_transition_time,
        reason, message
    }
    corev1::PodDnsConfig { nameservers, searches, options }
    corev1::PodDnsConfigOption { name, value: keep }
    corev1::PodIp { ip: keep }
    corev1::PodOs { name: keep }
    corev1::PodReadinessGate { condition_type: keep }
    corev1::PodResourceClaim {
        name: keep, resource_claim_name: keep, resource_claim_template_name: keep
    }
    corev1::PodResourceClaimStatus { name: keep, resource_claim_name: keep }
    corev1::PodSchedulingGate { name: keep }
    corev1::PodSecurityContext {
        se_linux_options, windows_options, run_as_user: keep, run_as_group: keep,
        run_as_non_root: keep, supplemental_groups, supplemental_groups_policy: keep,
        fs_group: keep, sysctls, fs_group_change_policy: keep, seccomp_profile, app_armor_profile,
        se_linux_change_policy: keep
    }
    corev1::PodSpec {
        volumes, init_containers, containers: keep, ephemeral_containers, restart_policy,
        termination_grace_period_seconds: keep, active_deadline_seconds: keep, dns_policy,
        node_selector, service_account_name, service_account, automount_service_account_token: keep,
        node_name, host_network, host_pid = "hostPID", host_ipc = "hostIPC",
        share_process_namespace: keep, security_context, image_pull_secrets, hostname, subdomain,
        affinity, scheduler_name, tolerations, host_aliases, priority_class_name, priority: keep,
        dns_config, readiness_gates, runtime_class_name: keep, enable_service_links: keep,
        preemption_policy: keep, overhead, topology_spread_constraints,
        set_hostname_as_fqdn = "setHostnameAsFQDN": keep, os, host_users: keep, scheduling_gates,
        resource_claims, resources
    }
    corev1::PodStatus {
        observed_generation, phase, conditions, message, reason, nominated_node_name,
        host_ip = "hostIP", host_ips = "hostIPs", pod_ip = "podIP", pod_ips = "podIPs", start_time,
        init_container_statuses, container_statuses, qos_class, ephemeral_container_statuses,
        resize, resource_claim_statuses
    }
    corev1::PodTemplateSpec { metadata, spec }
    corev1::PortStatus { port: keep, protocol: keep, error: keep }
    corev1::PreferredSchedulingTerm { weight: keep, preference }
    corev1::Probe {
        handler: inline, initial_delay_seconds, timeout_seconds, period_seconds, success_threshold,
        failure_threshold, termination_grace_period_seconds: keep
    }
    corev1::ProbeHandler { exec, http_get, tcp_socket, grpc }
    corev1::ProjectedVolumeSource { sources: keep, default_mode: keep }
    corev1::ResourceClaim { name: keep, request }
    corev1::ResourceFieldSelector { container_name, resource: keep, divisor }
    corev1::ResourceHealth { resource_id = "resourceID": keep, health }
    corev1::ResourceRequirements { limits, requests, claims }
    corev1::ResourceStatus { name: keep, resources }
    corev1::SeLinuxOptions { user, role, r#type, level }
    corev1::SeccompProfile { r#type: keep, localhost_profile: keep }
    corev1::SecretEnvSource { local_object_reference: inline, optional: keep }
    corev1::SecretKeySelector { local_object_reference: inline, key: keep, optional: keep }
    corev1::SecretProjection { local_object_reference: inline, items, optional: keep }
    corev1::SecretVolumeSource { secret_name, items, default_mode: keep, optional: keep }
    corev1::SecurityContext {
        capabilities, privileged: keep, se_linux_options, windows_options, run_as_user: keep,
        run_as_group: keep, run_as_non_root: keep, read_only_root_filesystem: keep,
        allow_privilege_escalation: keep, proc_mount: keep, seccomp_profile, app_armor_profile
    }
    corev1::Service { metadata, spec, status }
    corev1::ServiceAccountTokenProjection { audience, expiration_seconds: keep, path: keep }
    corev1::ServicePort { name, protocol, app_protocol: keep, port: keep, target_port, node_port }
    corev1::ServiceSpec {
        ports, selector, cluster_ip = "clusterIP", cluster_ips = "clusterIPs", r#type,
        external_ips = "externalIPs", session_affinity, load_balancer_ip = "loadBalancerIP",
        load_balancer_source_ranges, external_name, external_traffic_policy, health_check_node_port,
        publish_not_ready_addresses, session_affinity_config, ip_families, ip_family_policy: keep,
        allocate_load_balancer_node_ports: keep, load_balancer_class: keep,
        internal_traffic_policy: keep, traffic_distribution: keep
    }
    corev1::ServiceStatus { load_balancer, conditions }
    corev1::SessionAffinityConfig { client_ip = "clientIP" }
    corev1::SleepAction { seconds: keep }
    corev1::Sysctl { name: keep, value: keep }
    corev1::Taint { key: keep, value, effect: keep, time_added }
    corev1::TcpSocketAction { port, host }
    corev1::Toleration { key, operator, value, effect, toleration_seconds: keep }
    corev1::TopologySpreadConstraint {
        max_skew: keep, topology_key: keep, when_unsatisfiable: keep, label_selector,
        min_domains: keep, node_affinity_policy: keep, node_taints_policy: keep, match_label_keys
    }
    corev1::TypedLocalObjectReference { api_group: keep, kind: keep, name: keep }
    corev1::TypedObjectReference { api_group: keep, kind: keep, name: keep, namespace: keep }
    corev1::Volume { name: keep, volume_source: inline }
    corev1::VolumeDevice { name: keep, device_path: keep }
    corev1::VolumeMount {
        name: keep, read_only, recursive_read_only: keep, mount_path: keep, sub_path,
        mount_propagation: keep, sub_path_expr
    }
    corev1::VolumeMountStatus { name: keep, mount_path: keep, read_only, recursive_read_only: keep }
    corev1::VolumeProjection {
        secret, downward_api = "downwardAPI", config_map, service_account_token,
        cluster_trust_bundle
    }
    corev1::VolumeResourceRequirements { limits, requests }
    corev1::VolumeSource {
        host_path, empty_dir, secret, nfs, persistent_volume_claim, downward_api = "downwardAPI",
        config_map, projected, csi, ephemeral, image
    }
    corev1::WeightedPodAffinityTerm { weight: keep, pod_affinity_term }
    corev1::WindowsSecurityContextOptions {
        gmsa_credential_spec_name: keep, gmsa_credential_spec: keep, run_as_user_name: keep,
        host_process: keep
    }
    discoveryv1::Endpoint {
        addresses: keep, conditions, hostname: keep, target_ref, deprecated_topology,
        node_name: keep, zone: keep, hints
    }
    discoveryv1::EndpointConditions { ready: keep, serving: keep, terminating: keep }
    discoveryv1::EndpointHints { for_zones, for_nodes }
    discoveryv1::EndpointPort { name: keep, protocol: keep, port: keep, app_protocol: keep }
    discoveryv1::EndpointSlice { metadata, address_type: keep, endpoints: keep, ports: keep }
    discoveryv1::ForNode { name: keep }
    discoveryv1::ForZone { name: keep }
    metav1::Condition {
        r#type: keep, status: keep, observed_generation, last_transition_time, reason: keep,
        message: keep
    }
    metav1::LabelSelector { match_labels, match_expressions }
    metav1::LabelSelectorRequirement { key: keep, operator: keep, values }
    metav1::ObjectMeta {
        name, generate_name, namespace, self_link, uid, resource_version, generation,
        creation_timestamp, deletion_timestamp, deletion_grace_period_seconds: keep, labels,
        annotations, owner_references, finalizers
    }
    metav1::OwnerReference {
        api_version: keep, kind: keep, name: keep, uid: keep, controller: keep,
        block_owner_deletion: keep
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1 as api_apps;
    use k8s_openapi::api::coordination::v1 as api_coordination;
    use k8s_openapi::api::core::v1 as api_core;
    use k8s_openapi::api::discovery::v1 as api_discovery;
    use metav1::{LabelSelector, LabelSelectorRequirement, ObjectMeta, OwnerReference};
    use rand::{Rng, SeedableRng};
    use serde_json::json;

    /// Parses the JSON through the k8s-openapi type and back: a wrong name or shape changes it.
    type RoundTrip = fn(&Value) -> Value;

    fn roundtrip<K: serde::de::DeserializeOwned + serde::Serialize>(value: &Value) -> Value {
        let typed: K = serde_json::from_value(value.clone()).expect("k8s-openapi accepts the JSON");
        serde_json::to_value(typed).expect("k8s-openapi serializes")
    }

    /// Decodes `body` and compares it with `expected`, directly and through k8s-openapi.
    fn check(name: &str, body: &[u8], expected: &Value, round: RoundTrip) {
        let decoded = decode(body).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(&decoded, expected, "{name}");
        assert_eq!(&round(&decoded), expected, "{name}: k8s-openapi round trip");
    }

    fn wire(api_version: &str, kind: &str, message: &impl Message) -> Vec<u8> {
        wire_raw(api_version, kind, message.encode_to_vec())
    }

    fn wire_raw(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
        let envelope = Unknown {
            type_meta: Some(k8s_pb::apimachinery::pkg::runtime::TypeMeta {
                api_version: s(api_version),
                kind: s(kind),
            }),
            raw: Some(raw),
            content_encoding: s(""),
            content_type: s(""),
        };
        [MAGIC, &envelope.encode_to_vec()].concat()
    }

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
            .collect()
    }

    fn s(value: &str) -> Option<String> {
        Some(value.to_owned())
    }

    fn strs(values: &[&str]) -> Vec<String> {
        values.iter().map(|v| (*v).to_owned()).collect()
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn time(seconds: i64) -> Option<metav1::Time> {
        Some(metav1::Time {
            seconds: Some(seconds),
            nanos: Some(0),
        })
    }

    fn micro(seconds: i64, nanos: i32) -> Option<metav1::MicroTime> {
        Some(metav1::MicroTime {
            seconds: Some(seconds),
            nanos: Some(nanos),
        })
    }

    fn port(number: i32) -> Option<IntOrString> {
        Some(IntOrString {
            r#type: Some(0),
            int_val: Some(number),
            str_val: None,
        })
    }

    fn named(name: &str) -> Option<IntOrString> {
        Some(IntOrString {
            r#type: Some(1),
            int_val: None,
            str_val: s(name),
        })
    }

    fn quantities(pairs: &[(&str, &str)]) -> BTreeMap<String, Quantity> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Quantity { string: s(v) }))
            .collect()
    }

    fn meta(name: &str, namespace: &str) -> Option<ObjectMeta> {
        Some(ObjectMeta {
            name: s(name),
            namespace: s(namespace),
            ..Default::default()
        })
    }

    /// 2024-01-02T03:04:05Z.
    const T0: i64 = 1_704_164_645;

    // What kubectl 1.32 sends, captured from the wire:
    // `kubectl create service nodeport frontend-svc --tcp=80:5000 --node-port=32233`
    const KUBECTL_SERVICE: &str = concat!(
        "6b3873000a0d0a0276311207536572766963651285010a310a0c66726f6e74656e642d7376631200",
        "1a0022002a003200380042005a130a03617070120c66726f6e74656e642d737663124c0a1d0a0738",
        "302d3530303012035443501850220708001088271a0028e9fb0112130a03617070120c66726f6e74",
        "656e642d7376631a0022084e6f6465506f72743a00420052005a00600068001a020a001a002200",
    );
    // `kubectl create deployment web --image=nginx --replicas=2 --port=80`
    const KUBECTL_DEPLOYMENT: &str = concat!(
        "6b3873000a150a07617070732f7631120a4465706c6f796d656e7412b8010a1f0a0377656212001a",
        "0022002a003200380042005a0a0a0361707012037765621286010802120c0a0a0a03617070120377",
        "65621a6c0a1c0a0012001a0022002a003200380042005a0a0a036170701203776562124c122e0a05",
        "6e67696e7812056e67696e782a00320a0a001000185022002a0042006a0072008001008801009001",
        "00a201001a00320042004a0052005800600068008201008a01009a0100c2010022020a0028003800",
        "1a0c0800100018002000280038001a002200",
    );
    // `kubectl create namespace dev`
    const KUBECTL_NAMESPACE: &str = concat!(
        "6b3873000a0f0a02763112094e616d657370616365121b0a130a0364657612001a0022002a003200",
        "3800420012001a020a001a002200",
    );

    // `kubectl create service externalname ext --external-name bar.com`
    const KUBECTL_EXTERNAL_NAME: &str = concat!(
        "6b3873000a0d0a02763112075365727669636512560a1f0a0365787412001a0022002a0032003800",
        "42005a0a0a036170701203657874122f120a0a0361707012036578741a00220c45787465726e616c",
        "4e616d653a00420052076261722e636f6d5a00600068001a020a001a002200",
    );
    // `kubectl create service clusterip hl --clusterip=None`
    const KUBECTL_HEADLESS: &str = concat!(
        "6b3873000a0d0a027631120753657276696365124d0a1d0a02686c12001a0022002a003200380042",
        "005a090a036170701202686c122812090a036170701202686c1a044e6f6e652209436c7573746572",
        "49503a00420052005a00600068001a020a001a002200",
    );

    /// The expected JSON is what `kubectl create ... --dry-run=client -o json` prints for the
    /// same command, less its `creationTimestamp: null`.
    #[test]
    fn decodes_what_kubectl_create_sends() {
        let cases: [(&str, &str, Value, RoundTrip); 5] = [
            (
                "service nodeport",
                KUBECTL_SERVICE,
                json!({
                    "kind": "Service", "apiVersion": "v1",
                    "metadata": {"name": "frontend-svc", "labels": {"app": "frontend-svc"}},
                    "spec": {
                        "ports": [{"name": "80-5000", "protocol": "TCP", "port": 80,
                                   "targetPort": 5000, "nodePort": 32233}],
                        "selector": {"app": "frontend-svc"},
                        "type": "NodePort"
                    },
                    "status": {"loadBalancer": {}}
                }),
                roundtrip::<api_core::Service>,
            ),
            (
                "deployment",
                KUBECTL_DEPLOYMENT,
                json!({
                    "kind": "Deployment", "apiVersion": "apps/v1",
                    "metadata": {"name": "web", "labels": {"app": "web"}},
                    "spec": {
                        "replicas": 2,
                        "selector": {"matchLabels": {"app": "web"}},
                        "template": {
                            "metadata": {"labels": {"app": "web"}},
                            "spec": {"containers": [{"name": "nginx", "image": "nginx",
                                "ports": [{"containerPort": 80}], "resources": {}}]}
                        },
                        "strategy": {}
                    },
                    "status": {}
                }),
                roundtrip::<api_apps::Deployment>,
            ),
            (
                "namespace",
                KUBECTL_NAMESPACE,
                json!({"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": "dev"},
                       "spec": {}, "status": {}}),
                roundtrip::<api_core::Namespace>,
            ),
            (
                "service externalname",
                KUBECTL_EXTERNAL_NAME,
                json!({"kind": "Service", "apiVersion": "v1",
                       "metadata": {"name": "ext", "labels": {"app": "ext"}},
                       "spec": {"selector": {"app": "ext"}, "type": "ExternalName", "externalName": "bar.com"},
                       "status": {"loadBalancer": {}}}),
                roundtrip::<api_core::Service>,
            ),
            (
                "service clusterip headless",
                KUBECTL_HEADLESS,
                json!({"kind": "Service", "apiVersion": "v1",
                       "metadata": {"name": "hl", "labels": {"app": "hl"}},
                       "spec": {"selector": {"app": "hl"}, "clusterIP": "None", "type": "ClusterIP"},
                       "status": {"loadBalancer": {}}}),
                roundtrip::<api_core::Service>,
            ),
        ];
        for (name, body, expected, round) in cases {
            check(name, &hex(body), &expected, round);
        }
    }

    fn container(name: &str) -> corev1::Container {
        corev1::Container {
            name: s(name),
            image: s("busybox"),
            ..Default::default()
        }
    }

    fn full_container() -> corev1::Container {
        let http_probe = corev1::Probe {
            handler: Some(corev1::ProbeHandler {
                http_get: Some(corev1::HttpGetAction {
                    path: s("/healthz"),
                    port: named("http"),
                    host: s(""),
                    scheme: s("HTTP"),
                    http_headers: vec![corev1::HttpHeader {
                        name: s("X-Probe"),
                        value: s("1"),
                    }],
                }),
                ..Default::default()
            }),
            initial_delay_seconds: Some(5),
            timeout_seconds: Some(1),
            period_seconds: Some(10),
            success_threshold: Some(1),
            failure_threshold: Some(3),
            termination_grace_period_seconds: None,
        };
        let probe = |handler: corev1::ProbeHandler| corev1::Probe {
            handler: Some(handler),
            initial_delay_seconds: Some(0),
            ..Default::default()
        };
        let env = |name: &str, source: corev1::EnvVarSource| corev1::EnvVar {
            name: s(name),
            value: s(""),
            value_from: Some(source),
        };
        let reference = |name: &str| Some(corev1::LocalObjectReference { name: s(name) });
        corev1::Container {
            name: s("web"),
            image: s("nginx:1.27"),
            command: strs(&["/bin/server"]),
            args: strs(&["--port", "8080"]),
            working_dir: s("/srv"),
            ports: vec![corev1::ContainerPort {
                name: s("http"),
                host_port: Some(0),
                container_port: Some(8080),
                protocol: s("TCP"),
                host_ip: s(""),
            }],
            env: vec![
                corev1::EnvVar {
                    name: s("MODE"),
                    value: s("prod"),
                    value_from: None,
                },
                env(
                    "POD_IP",
                    corev1::EnvVarSource {
                        field_ref: Some(corev1::ObjectFieldSelector {
                            api_version: s("v1"),
                            field_path: s("status.podIP"),
                        }),
                        ..Default::default()
                    },
                ),
                env(
                    "COLOR",
                    corev1::EnvVarSource {
                        config_map_key_ref: Some(corev1::ConfigMapKeySelector {
                            local_object_reference: reference("settings"),
                            key: s("color"),
                            optional: Some(false),
                        }),
                        ..Default::default()
                    },
                ),
                env(
                    "TOKEN",
                    corev1::EnvVarSource {
                        secret_key_ref: Some(corev1::SecretKeySelector {
                            local_object_reference: reference("creds"),
                            key: s("token"),
                            optional: None,
                        }),
                        ..Default::default()
                    },
                ),
                env(
                    "CPU",
                    corev1::EnvVarSource {
                        resource_field_ref: Some(corev1::ResourceFieldSelector {
                            container_name: s("web"),
                            resource: s("limits.cpu"),
                            divisor: Some(Quantity { string: s("1m") }),
                        }),
                        ..Default::default()
                    },
                ),
            ],
            resources: Some(corev1::ResourceRequirements {
                limits: quantities(&[("cpu", "500m"), ("memory", "128Mi")]),
                requests: quantities(&[("cpu", "100m")]),
                claims: vec![corev1::ResourceClaim {
                    name: s("gpu"),
                    request: s(""),
                }],
            }),
            volume_mounts: vec![corev1::VolumeMount {
                name: s("cache"),
                read_only: Some(true),
                mount_path: s("/cache"),
                sub_path: s(""),
                ..Default::default()
            }],
            liveness_probe: Some(http_probe),
            readiness_probe: Some(probe(corev1::ProbeHandler {
                tcp_socket: Some(corev1::TcpSocketAction {
                    port: port(8080),
                    host: s(""),
                }),
                ..Default::default()
            })),
            startup_probe: Some(probe(corev1::ProbeHandler {
                grpc: Some(corev1::GrpcAction {
                    port: Some(9090),
                    service: s(""),
                }),
                ..Default::default()
            })),
            lifecycle: Some(corev1::Lifecycle {
                post_start: Some(corev1::LifecycleHandler {
                    exec: Some(corev1::ExecAction {
                        command: strs(&["touch", "/ready"]),
                    }),
                    ..Default::default()
                }),
                pre_stop: Some(corev1::LifecycleHandler {
                    sleep: Some(corev1::SleepAction { seconds: Some(5) }),
                    ..Default::default()
                }),
                stop_signal: None,
            }),
            termination_message_path: s("/dev/termination-log"),
            termination_message_policy: s("File"),
            image_pull_policy: s("IfNotPresent"),
            security_context: Some(corev1::SecurityContext {
                capabilities: Some(corev1::Capabilities {
                    add: strs(&["NET_ADMIN"]),
                    drop: strs(&["ALL"]),
                }),
                privileged: Some(false),
                run_as_user: Some(1000),
                run_as_non_root: Some(true),
                read_only_root_filesystem: Some(true),
                allow_privilege_escalation: Some(false),
                ..Default::default()
            }),
            stdin: Some(true),
            stdin_once: Some(false),
            tty: Some(true),
            ..Default::default()
        }
    }

    fn full_container_json() -> Value {
        json!({
            "name": "web", "image": "nginx:1.27", "command": ["/bin/server"],
            "args": ["--port", "8080"], "workingDir": "/srv",
            "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
            "env": [
                {"name": "MODE", "value": "prod"},
                {"name": "POD_IP", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "status.podIP"}}},
                {"name": "COLOR", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "color", "optional": false}}},
                {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
                {"name": "CPU", "valueFrom": {"resourceFieldRef": {"containerName": "web", "resource": "limits.cpu", "divisor": "1m"}}}
            ],
            "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}, "requests": {"cpu": "100m"},
                          "claims": [{"name": "gpu"}]},
            "volumeMounts": [{"name": "cache", "readOnly": true, "mountPath": "/cache"}],
            "livenessProbe": {
                "httpGet": {"path": "/healthz", "port": "http", "scheme": "HTTP",
                            "httpHeaders": [{"name": "X-Probe", "value": "1"}]},
                "initialDelaySeconds": 5, "timeoutSeconds": 1, "periodSeconds": 10,
                "successThreshold": 1, "failureThreshold": 3
            },
            "readinessProbe": {"tcpSocket": {"port": 8080}},
            "startupProbe": {"grpc": {"port": 9090, "service": ""}},
            "lifecycle": {"postStart": {"exec": {"command": ["touch", "/ready"]}},
                          "preStop": {"sleep": {"seconds": 5}}},
            "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
            "imagePullPolicy": "IfNotPresent",
            "securityContext": {"capabilities": {"add": ["NET_ADMIN"], "drop": ["ALL"]},
                "privileged": false, "runAsUser": 1000, "runAsNonRoot": true,
                "readOnlyRootFilesystem": true, "allowPrivilegeEscalation": false},
            "stdin": true, "tty": true
        })
    }

    fn full_pod_spec() -> corev1::PodSpec {
        let volume = |name: &str, source: corev1::VolumeSource| corev1::Volume {
            name: s(name),
            volume_source: Some(source),
        };
        let items = vec![corev1::KeyToPath {
            key: s("a"),
            path: s("a.txt"),
            mode: Some(0o400),
        }];
        corev1::PodSpec {
            volumes: vec![
                volume(
                    "cache",
                    corev1::VolumeSource {
                        empty_dir: Some(corev1::EmptyDirVolumeSource {
                            medium: s(""),
                            size_limit: Some(Quantity { string: s("1Gi") }),
                        }),
                        ..Default::default()
                    },
                ),
                volume(
                    "scratch",
                    corev1::VolumeSource {
                        empty_dir: Some(Default::default()),
                        ..Default::default()
                    },
                ),
                volume(
                    "settings",
                    corev1::VolumeSource {
                        config_map: Some(corev1::ConfigMapVolumeSource {
                            local_object_reference: Some(corev1::LocalObjectReference {
                                name: s("settings"),
                            }),
                            items: items.clone(),
                            default_mode: Some(420),
                            optional: None,
                        }),
                        ..Default::default()
                    },
                ),
                volume(
                    "creds",
                    corev1::VolumeSource {
                        secret: Some(corev1::SecretVolumeSource {
                            secret_name: s("creds"),
                            items,
                            default_mode: None,
                            optional: Some(true),
                        }),
                        ..Default::default()
                    },
                ),
                volume(
                    "data",
                    corev1::VolumeSource {
                        ephemeral: Some(corev1::EphemeralVolumeSource {
                            volume_claim_template: Some(corev1::PersistentVolumeClaimTemplate {
                                metadata: None,
                                spec: Some(corev1::PersistentVolumeClaimSpec {
                                    access_modes: strs(&["ReadWriteOnce"]),
                                    resources: Some(corev1::VolumeResourceRequirements {
                                        limits: BTreeMap::new(),
                                        requests: quantities(&[("storage", "1Gi")]),
                                    }),
                                    storage_class_name: s("fast"),
                                    ..Default::default()
                                }),
                            }),
                        }),
                        ..Default::default()
                    },
                ),
                volume(
                    "logs",
                    corev1::VolumeSource {
                        host_path: Some(corev1::HostPathVolumeSource {
                            path: s("/var/log"),
                            r#type: s("DirectoryOrCreate"),
                        }),
                        ..Default::default()
                    },
                ),
            ],
            init_containers: vec![container("init")],
            containers: vec![full_container()],
            restart_policy: s("Always"),
            termination_grace_period_seconds: Some(30),
            active_deadline_seconds: Some(600),
            dns_policy: s("ClusterFirst"),
            dns_config: Some(corev1::PodDnsConfig {
                nameservers: strs(&["10.96.0.10"]),
                searches: strs(&["svc.cluster.local"]),
                options: vec![corev1::PodDnsConfigOption {
                    name: s("ndots"),
                    value: s("2"),
                }],
            }),
            node_selector: labels(&[("disk", "ssd")]),
            service_account_name: s("runner"),
            automount_service_account_token: Some(false),
            node_name: s("node-1"),
            host_network: Some(false),
            hostname: s("web-0"),
            subdomain: s("web"),
            enable_service_links: Some(false),
            scheduler_name: s("default-scheduler"),
            tolerations: vec![corev1::Toleration {
                key: s("node.kubernetes.io/not-ready"),
                operator: s("Exists"),
                value: s(""),
                effect: s("NoExecute"),
                toleration_seconds: Some(300),
            }],
            affinity: Some(corev1::Affinity {
                node_affinity: Some(corev1::NodeAffinity {
                    required_during_scheduling_ignored_during_execution: Some(
                        corev1::NodeSelector {
                            node_selector_terms: vec![corev1::NodeSelectorTerm {
                                match_expressions: vec![corev1::NodeSelectorRequirement {
                                    key: s("zone"),
                                    operator: s("In"),
                                    values: strs(&["a", "b"]),
                                }],
                                match_fields: vec![],
                            }],
                        },
                    ),
                    preferred_during_scheduling_ignored_during_execution: vec![],
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn full_pod_spec_json() -> Value {
        json!({
            "volumes": [
                {"name": "cache", "emptyDir": {"sizeLimit": "1Gi"}},
                {"name": "scratch", "emptyDir": {}},
                {"name": "settings", "configMap": {"name": "settings",
                    "items": [{"key": "a", "path": "a.txt", "mode": 256}], "defaultMode": 420}},
                {"name": "creds", "secret": {"secretName": "creds",
                    "items": [{"key": "a", "path": "a.txt", "mode": 256}], "optional": true}},
                {"name": "data", "ephemeral": {"volumeClaimTemplate": {"spec": {
                    "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}},
                    "storageClassName": "fast"}}}},
                {"name": "logs", "hostPath": {"path": "/var/log", "type": "DirectoryOrCreate"}}
            ],
            "initContainers": [{"name": "init", "image": "busybox"}],
            "containers": [full_container_json()],
            "restartPolicy": "Always", "terminationGracePeriodSeconds": 30,
            "activeDeadlineSeconds": 600, "dnsPolicy": "ClusterFirst",
            "dnsConfig": {"nameservers": ["10.96.0.10"], "searches": ["svc.cluster.local"],
                          "options": [{"name": "ndots", "value": "2"}]},
            "nodeSelector": {"disk": "ssd"}, "serviceAccountName": "runner",
            "automountServiceAccountToken": false, "nodeName": "node-1",
            "hostname": "web-0", "subdomain": "web", "enableServiceLinks": false,
            "schedulerName": "default-scheduler",
            "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists",
                             "effect": "NoExecute", "tolerationSeconds": 300}],
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}]}]
            }}}
        })
    }

    fn selector() -> Option<LabelSelector> {
        Some(LabelSelector {
            match_labels: labels(&[("app", "web")]),
            match_expressions: vec![LabelSelectorRequirement {
                key: s("tier"),
                operator: s("NotIn"),
                values: strs(&["db"]),
            }],
        })
    }

    fn selector_json() -> Value {
        json!({"matchLabels": {"app": "web"},
               "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["db"]}]})
    }

    fn template() -> Option<corev1::PodTemplateSpec> {
        Some(corev1::PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: labels(&[("app", "web")]),
                creation_timestamp: Some(Default::default()),
                ..Default::default()
            }),
            spec: Some(full_pod_spec()),
        })
    }

    fn full_service() -> corev1::Service {
        corev1::Service {
            metadata: Some(ObjectMeta {
                name: s("web"),
                generate_name: s("web-"),
                namespace: s("prod"),
                self_link: s(""),
                uid: s("8d3c1b4e-0000-4000-8000-000000000001"),
                resource_version: s("42"),
                generation: Some(3),
                creation_timestamp: time(T0),
                deletion_timestamp: time(T0 + 60),
                deletion_grace_period_seconds: Some(0),
                labels: labels(&[("app", "web")]),
                annotations: labels(&[("note", "x")]),
                owner_references: vec![OwnerReference {
                    api_version: s("apps/v1"),
                    kind: s("Deployment"),
                    name: s("web"),
                    uid: s("u-1"),
                    controller: Some(true),
                    block_owner_deletion: Some(false),
                }],
                finalizers: strs(&["example.com/keep"]),
                managed_fields: vec![],
            }),
            spec: Some(corev1::ServiceSpec {
                ports: vec![
                    corev1::ServicePort {
                        name: s("http"),
                        protocol: s("TCP"),
                        app_protocol: s("http"),
                        port: Some(80),
                        target_port: named("web"),
                        node_port: Some(30080),
                    },
                    corev1::ServicePort {
                        name: s("dns"),
                        protocol: s("UDP"),
                        app_protocol: None,
                        port: Some(53),
                        target_port: port(5353),
                        node_port: Some(0),
                    },
                ],
                selector: labels(&[("app", "web")]),
                cluster_ip: s("10.96.0.20"),
                cluster_ips: strs(&["10.96.0.20", "fd00::20"]),
                r#type: s("LoadBalancer"),
                external_ips: strs(&["192.0.2.10"]),
                session_affinity: s("ClientIP"),
                load_balancer_ip: s("192.0.2.1"),
                load_balancer_source_ranges: strs(&["192.0.2.0/24"]),
                external_name: s("web.example.com"),
                external_traffic_policy: s("Local"),
                health_check_node_port: Some(31000),
                publish_not_ready_addresses: Some(true),
                session_affinity_config: Some(corev1::SessionAffinityConfig {
                    client_ip: Some(corev1::ClientIpConfig {
                        timeout_seconds: Some(600),
                    }),
                }),
                ip_families: strs(&["IPv4", "IPv6"]),
                ip_family_policy: s("PreferDualStack"),
                allocate_load_balancer_node_ports: Some(false),
                load_balancer_class: s("example.com/lb"),
                internal_traffic_policy: s("Local"),
                traffic_distribution: s("PreferClose"),
            }),
            status: Some(corev1::ServiceStatus {
                load_balancer: Some(corev1::LoadBalancerStatus {
                    ingress: vec![corev1::LoadBalancerIngress {
                        ip: s("192.0.2.1"),
                        hostname: s(""),
                        ip_mode: s("VIP"),
                        ports: vec![corev1::PortStatus {
                            port: Some(80),
                            protocol: s("TCP"),
                            error: None,
                        }],
                    }],
                }),
                conditions: vec![metav1::Condition {
                    r#type: s("Ready"),
                    status: s("True"),
                    observed_generation: Some(3),
                    last_transition_time: time(T0),
                    reason: s("Allocated"),
                    message: s(""),
                }],
            }),
        }
    }

    fn full_service_json() -> Value {
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {
                "name": "web", "generateName": "web-", "namespace": "prod",
                "uid": "8d3c1b4e-0000-4000-8000-000000000001", "resourceVersion": "42",
                "generation": 3, "creationTimestamp": "2024-01-02T03:04:05Z",
                "deletionTimestamp": "2024-01-02T03:05:05Z", "deletionGracePeriodSeconds": 0,
                "labels": {"app": "web"}, "annotations": {"note": "x"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web",
                                     "uid": "u-1", "controller": true, "blockOwnerDeletion": false}],
                "finalizers": ["example.com/keep"]
            },
            "spec": {
                "ports": [
                    {"name": "http", "protocol": "TCP", "appProtocol": "http", "port": 80,
                     "targetPort": "web", "nodePort": 30080},
                    {"name": "dns", "protocol": "UDP", "port": 53, "targetPort": 5353}
                ],
                "selector": {"app": "web"}, "clusterIP": "10.96.0.20",
                "clusterIPs": ["10.96.0.20", "fd00::20"], "type": "LoadBalancer",
                "externalIPs": ["192.0.2.10"], "sessionAffinity": "ClientIP",
                "loadBalancerIP": "192.0.2.1", "loadBalancerSourceRanges": ["192.0.2.0/24"],
                "externalName": "web.example.com", "externalTrafficPolicy": "Local",
                "healthCheckNodePort": 31000, "publishNotReadyAddresses": true,
                "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 600}},
                "ipFamilies": ["IPv4", "IPv6"], "ipFamilyPolicy": "PreferDualStack",
                "allocateLoadBalancerNodePorts": false, "loadBalancerClass": "example.com/lb",
                "internalTrafficPolicy": "Local", "trafficDistribution": "PreferClose"
            },
            "status": {
                "loadBalancer": {"ingress": [{"ip": "192.0.2.1", "ipMode": "VIP",
                                              "ports": [{"port": 80, "protocol": "TCP"}]}]},
                "conditions": [{"type": "Ready", "status": "True", "observedGeneration": 3,
                                "lastTransitionTime": "2024-01-02T03:04:05Z",
                                "reason": "Allocated", "message": ""}]
            }
        })
    }

    fn full_deployment() -> appsv1::Deployment {
        appsv1::Deployment {
            metadata: meta("web", "prod"),
            spec: Some(appsv1::DeploymentSpec {
                replicas: Some(0),
                selector: selector(),
                template: template(),
                strategy: Some(appsv1::DeploymentStrategy {
                    r#type: s("RollingUpdate"),
                    rolling_update: Some(appsv1::RollingUpdateDeployment {
                        max_unavailable: port(0),
                        max_surge: named("25%"),
                    }),
                }),
                min_ready_seconds: Some(0),
                revision_history_limit: Some(0),
                paused: Some(true),
                progress_deadline_seconds: Some(600),
            }),
            status: Some(appsv1::DeploymentStatus {
                observed_generation: Some(2),
                replicas: Some(3),
                updated_replicas: Some(3),
                ready_replicas: Some(2),
                available_replicas: Some(2),
                unavailable_replicas: Some(1),
                conditions: vec![appsv1::DeploymentCondition {
                    r#type: s("Available"),
                    status: s("False"),
                    last_update_time: time(T0),
                    last_transition_time: Some(Default::default()),
                    reason: s("MinimumReplicasUnavailable"),
                    message: s("Deployment does not have minimum availability."),
                }],
                collision_count: Some(0),
                ..Default::default()
            }),
        }
    }

    fn full_deployment_json() -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "prod"},
            "spec": {
                "replicas": 0, "selector": selector_json(),
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": full_pod_spec_json()},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"}},
                "revisionHistoryLimit": 0, "paused": true, "progressDeadlineSeconds": 600
            },
            "status": {
                "observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "readyReplicas": 2,
                "availableReplicas": 2, "unavailableReplicas": 1,
                "conditions": [{"type": "Available", "status": "False",
                    "lastUpdateTime": "2024-01-02T03:04:05Z",
                    "reason": "MinimumReplicasUnavailable",
                    "message": "Deployment does not have minimum availability."}],
                "collisionCount": 0
            }
        })
    }

    #[test]
    fn decodes_every_served_kind() {
        let target = Some(corev1::ObjectReference {
            kind: s("Pod"),
            namespace: s("prod"),
            name: s("web-1"),
            uid: s("p-1"),
            ..Default::default()
        });
        let target_json =
            json!({"kind": "Pod", "namespace": "prod", "name": "web-1", "uid": "p-1"});
        let cases: Vec<(&str, Vec<u8>, Value, RoundTrip)> = vec![
            (
                "service",
                wire("v1", "Service", &full_service()),
                full_service_json(),
                roundtrip::<api_core::Service>,
            ),
            (
                "deployment",
                wire("apps/v1", "Deployment", &full_deployment()),
                full_deployment_json(),
                roundtrip::<api_apps::Deployment>,
            ),
            (
                "replicaset",
                wire(
                    "apps/v1",
                    "ReplicaSet",
                    &appsv1::ReplicaSet {
                        metadata: meta("web-5d8f", "prod"),
                        spec: Some(appsv1::ReplicaSetSpec {
                            replicas: Some(1),
                            min_ready_seconds: Some(5),
                            selector: selector(),
                            template: Some(corev1::PodTemplateSpec {
                                metadata: None,
                                spec: Some(corev1::PodSpec {
                                    containers: vec![container("c")],
                                    ..Default::default()
                                }),
                            }),
                        }),
                        status: Some(appsv1::ReplicaSetStatus {
                            replicas: Some(0),
                            fully_labeled_replicas: Some(0),
                            observed_generation: Some(1),
                            ..Default::default()
                        }),
                    },
                ),
                json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
                       "metadata": {"name": "web-5d8f", "namespace": "prod"},
                       "spec": {"replicas": 1, "minReadySeconds": 5, "selector": selector_json(),
                                "template": {"spec": {"containers": [{"name": "c", "image": "busybox"}]}}},
                       "status": {"replicas": 0, "observedGeneration": 1}}),
                roundtrip::<api_apps::ReplicaSet>,
            ),
            (
                "pod",
                wire(
                    "v1",
                    "Pod",
                    &corev1::Pod {
                        metadata: meta("web-1", "prod"),
                        spec: Some(full_pod_spec()),
                        status: Some(corev1::PodStatus {
                            phase: s("Running"),
                            conditions: vec![corev1::PodCondition {
                                r#type: s("Ready"),
                                status: s("True"),
                                last_probe_time: Some(Default::default()),
                                last_transition_time: time(T0),
                                ..Default::default()
                            }],
                            host_ip: s("172.18.0.2"),
                            host_ips: vec![corev1::HostIp {
                                ip: s("172.18.0.2"),
                            }],
                            pod_ip: s("10.244.1.5"),
                            pod_ips: vec![corev1::PodIp {
                                ip: s("10.244.1.5"),
                            }],
                            start_time: time(T0),
                            container_statuses: vec![corev1::ContainerStatus {
                                name: s("web"),
                                state: Some(corev1::ContainerState {
                                    running: Some(corev1::ContainerStateRunning {
                                        started_at: time(T0),
                                    }),
                                    ..Default::default()
                                }),
                                ready: Some(true),
                                restart_count: Some(0),
                                image: s("nginx:1.27"),
                                image_id: s(""),
                                container_id: s("svcnet://web-1/web"),
                                started: Some(true),
                                ..Default::default()
                            }],
                            qos_class: s("Burstable"),
                            ..Default::default()
                        }),
                    },
                ),
                json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-1", "namespace": "prod"},
                       "spec": full_pod_spec_json(),
                       "status": {"phase": "Running",
                           "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2024-01-02T03:04:05Z"}],
                           "hostIP": "172.18.0.2", "hostIPs": [{"ip": "172.18.0.2"}],
                           "podIP": "10.244.1.5", "podIPs": [{"ip": "10.244.1.5"}],
                           "startTime": "2024-01-02T03:04:05Z",
                           "containerStatuses": [{"name": "web", "state": {"running": {"startedAt": "2024-01-02T03:04:05Z"}},
                               "ready": true, "restartCount": 0, "image": "nginx:1.27", "imageID": "",
                               "containerID": "svcnet://web-1/web", "started": true}],
                           "qosClass": "Burstable"}}),
                roundtrip::<api_core::Pod>,
            ),
            (
                "endpoints",
                wire(
                    "v1",
                    "Endpoints",
                    &corev1::Endpoints {
                        metadata: meta("web", "prod"),
                        subsets: vec![corev1::EndpointSubset {
                            addresses: vec![corev1::EndpointAddress {
                                ip: s("10.244.1.5"),
                                hostname: s(""),
                                node_name: s("node-1"),
                                target_ref: target.clone(),
                            }],
                            not_ready_addresses: vec![corev1::EndpointAddress {
                                ip: s("10.244.2.7"),
                                ..Default::default()
                            }],
                            ports: vec![corev1::EndpointPort {
                                name: s("http"),
                                port: Some(8080),
                                protocol: s("TCP"),
                                app_protocol: None,
                            }],
                        }],
                    },
                ),
                json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "web", "namespace": "prod"},
                       "subsets": [{"addresses": [{"ip": "10.244.1.5", "nodeName": "node-1", "targetRef": target_json}],
                                    "notReadyAddresses": [{"ip": "10.244.2.7"}],
                                    "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}]}),
                roundtrip::<api_core::Endpoints>,
            ),
            (
                "node",
                wire(
                    "v1",
                    "Node",
                    &corev1::Node {
                        metadata: Some(ObjectMeta {
                            name: s("node-1"),
                            ..Default::default()
                        }),
                        spec: Some(corev1::NodeSpec {
                            pod_cidr: s("10.244.1.0/24"),
                            pod_cid_rs: strs(&["10.244.1.0/24"]),
                            provider_id: s("svcnet://node-1"),
                            unschedulable: Some(false),
                            taints: vec![corev1::Taint {
                                key: s("node.kubernetes.io/unreachable"),
                                value: s(""),
                                effect: s("NoSchedule"),
                                time_added: time(T0),
                            }],
                            ..Default::default()
                        }),
                        status: Some(corev1::NodeStatus {
                            capacity: quantities(&[("cpu", "2"), ("pods", "110")]),
                            allocatable: quantities(&[("cpu", "2")]),
                            conditions: vec![corev1::NodeCondition {
                                r#type: s("Ready"),
                                status: s("True"),
                                last_heartbeat_time: time(T0),
                                last_transition_time: time(T0),
                                reason: s("KubeletReady"),
                                message: s("kubelet is posting ready status"),
                            }],
                            addresses: vec![corev1::NodeAddress {
                                r#type: s("InternalIP"),
                                address: s("172.18.0.2"),
                            }],
                            daemon_endpoints: Some(corev1::NodeDaemonEndpoints {
                                kubelet_endpoint: Some(corev1::DaemonEndpoint {
                                    port: Some(10250),
                                }),
                            }),
                            node_info: Some(corev1::NodeSystemInfo {
                                machine_id: s("m"),
                                system_uuid: s("u"),
                                boot_id: s("b"),
                                kernel_version: s("6.1"),
                                os_image: s("Linux"),
                                container_runtime_version: s("svcnet://0.1"),
                                kubelet_version: s("v1.33.0"),
                                kube_proxy_version: s(""),
                                operating_system: s("linux"),
                                architecture: s("amd64"),
                                swap: None,
                            }),
                            ..Default::default()
                        }),
                    },
                ),
                json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1"},
                       "spec": {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24"], "providerID": "svcnet://node-1",
                                "taints": [{"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule",
                                            "timeAdded": "2024-01-02T03:04:05Z"}]},
                       "status": {"capacity": {"cpu": "2", "pods": "110"}, "allocatable": {"cpu": "2"},
                           "conditions": [{"type": "Ready", "status": "True",
                               "lastHeartbeatTime": "2024-01-02T03:04:05Z", "lastTransitionTime": "2024-01-02T03:04:05Z",
                               "reason": "KubeletReady", "message": "kubelet is posting ready status"}],
                           "addresses": [{"type": "InternalIP", "address": "172.18.0.2"}],
                           "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
                           "nodeInfo": {"machineID": "m", "systemUUID": "u", "bootID": "b", "kernelVersion": "6.1",
                               "osImage": "Linux", "containerRuntimeVersion": "svcnet://0.1",
                               "kubeletVersion": "v1.33.0", "kubeProxyVersion": "",
                               "operatingSystem": "linux", "architecture": "amd64"}}}),
                roundtrip::<api_core::Node>,
            ),
            (
                "event",
                wire(
                    "v1",
                    "Event",
                    &corev1::Event {
                        metadata: meta("web-1.17a", "prod"),
                        involved_object: target.clone(),
                        reason: s("Started"),
                        message: s("Started container web"),
                        source: Some(corev1::EventSource {
                            component: s("kubelet"),
                            host: s("node-1"),
                        }),
                        first_timestamp: time(T0),
                        last_timestamp: time(T0 + 1),
                        count: Some(2),
                        r#type: s("Normal"),
                        event_time: micro(T0, 123_456_789),
                        series: Some(corev1::EventSeries {
                            count: Some(2),
                            last_observed_time: micro(T0 + 1, 0),
                        }),
                        action: s("Start"),
                        related: None,
                        reporting_component: s("kubelet"),
                        reporting_instance: s("node-1"),
                    },
                ),
                json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "web-1.17a", "namespace": "prod"},
                       "involvedObject": target_json, "reason": "Started", "message": "Started container web",
                       "source": {"component": "kubelet", "host": "node-1"},
                       "firstTimestamp": "2024-01-02T03:04:05Z", "lastTimestamp": "2024-01-02T03:04:06Z",
                       "count": 2, "type": "Normal", "eventTime": "2024-01-02T03:04:05.123456Z",
                       "series": {"count": 2, "lastObservedTime": "2024-01-02T03:04:06.000000Z"},
                       "action": "Start", "reportingComponent": "kubelet", "reportingInstance": "node-1"}),
                roundtrip::<api_core::Event>,
            ),
            (
                "endpointslice",
                wire(
                    "discovery.k8s.io/v1",
                    "EndpointSlice",
                    &discoveryv1::EndpointSlice {
                        metadata: meta("web-abc", "prod"),
                        address_type: s("IPv4"),
                        endpoints: vec![discoveryv1::Endpoint {
                            addresses: strs(&["10.244.1.5"]),
                            conditions: Some(discoveryv1::EndpointConditions {
                                ready: Some(true),
                                serving: Some(true),
                                terminating: Some(false),
                            }),
                            hostname: None,
                            target_ref: target,
                            node_name: s("node-1"),
                            zone: s("a"),
                            hints: Some(discoveryv1::EndpointHints {
                                for_zones: vec![discoveryv1::ForZone { name: s("a") }],
                                for_nodes: vec![],
                            }),
                            ..Default::default()
                        }],
                        ports: vec![discoveryv1::EndpointPort {
                            name: s("http"),
                            protocol: s("TCP"),
                            port: Some(8080),
                            app_protocol: None,
                        }],
                    },
                ),
                json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                       "metadata": {"name": "web-abc", "namespace": "prod"}, "addressType": "IPv4",
                       "endpoints": [{"addresses": ["10.244.1.5"],
                           "conditions": {"ready": true, "serving": true, "terminating": false},
                           "targetRef": target_json, "nodeName": "node-1", "zone": "a",
                           "hints": {"forZones": [{"name": "a"}]}}],
                       "ports": [{"name": "http", "protocol": "TCP", "port": 8080}]}),
                roundtrip::<api_discovery::EndpointSlice>,
            ),
            (
                "lease",
                wire(
                    "coordination.k8s.io/v1",
                    "Lease",
                    &coordinationv1::Lease {
                        metadata: meta("node-1", "kube-node-lease"),
                        spec: Some(coordinationv1::LeaseSpec {
                            holder_identity: s("node-1"),
                            lease_duration_seconds: Some(40),
                            acquire_time: micro(T0, 0),
                            renew_time: micro(T0 + 10, 500_000),
                            lease_transitions: Some(0),
                            ..Default::default()
                        }),
                    },
                ),
                json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                       "metadata": {"name": "node-1", "namespace": "kube-node-lease"},
                       "spec": {"holderIdentity": "node-1", "leaseDurationSeconds": 40,
                                "acquireTime": "2024-01-02T03:04:05.000000Z",
                                "renewTime": "2024-01-02T03:04:15.000500Z", "leaseTransitions": 0}}),
                roundtrip::<api_coordination::Lease>,
            ),
            (
                "namespace",
                wire(
                    "v1",
                    "Namespace",
                    &corev1::Namespace {
                        metadata: Some(ObjectMeta {
                            name: s("dev"),
                            ..Default::default()
                        }),
                        spec: Some(corev1::NamespaceSpec {
                            finalizers: strs(&["kubernetes"]),
                        }),
                        status: Some(corev1::NamespaceStatus {
                            phase: s("Active"),
                            conditions: vec![],
                        }),
                    },
                ),
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "dev"},
                       "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}),
                roundtrip::<api_core::Namespace>,
            ),
        ];
        for (name, body, expected, round) in cases {
            check(name, &body, &expected, round);
        }
    }

    #[test]
    fn rejects_bad_bodies_with_clear_messages() {
        let service = hex(KUBECTL_SERVICE);
        // A metadata field whose length runs past the end of the message.
        let bad_raw =
            |api_version: &str, kind: &str| wire_raw(api_version, kind, vec![0x0a, 0x05, 0x0a]);
        let gzip = {
            let mut envelope = Unknown::decode(&service[4..]).expect("captured envelope");
            envelope.content_encoding = s("gzip");
            [MAGIC, &envelope.encode_to_vec()].concat()
        };
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            (
                "empty",
                vec![],
                "protobuf body does not start with the k8s\\0 magic",
            ),
            (
                "json",
                b"{\"kind\":\"Service\"}".to_vec(),
                "protobuf body does not start with the k8s\\0 magic",
            ),
            (
                "magic only",
                MAGIC.to_vec(),
                "protobuf body does not name its apiVersion and kind",
            ),
            (
                "garbage envelope",
                [MAGIC, &[0xff, 0xff, 0xff]].concat(),
                "invalid protobuf envelope (runtime.Unknown): failed to decode Protobuf message: invalid varint",
            ),
            (
                "truncated",
                service[..60].to_vec(),
                "invalid protobuf envelope (runtime.Unknown): failed to decode Protobuf message: Unknown.raw: buffer underflow",
            ),
            (
                "configmap",
                wire("v1", "ConfigMap", &corev1::ConfigMap::default()),
                "unsupported kind in protobuf body: v1/ConfigMap",
            ),
            (
                "deployment in v1",
                wire("v1", "Deployment", &appsv1::Deployment::default()),
                "unsupported kind in protobuf body: v1/Deployment",
            ),
            (
                "bad service",
                bad_raw("v1", "Service"),
                "invalid protobuf for v1/Service: failed to decode Protobuf message: Service.metadata: buffer underflow",
            ),
            (
                "bad deployment",
                bad_raw("apps/v1", "Deployment"),
                "invalid protobuf for apps/v1/Deployment: failed to decode Protobuf message: Deployment.metadata: buffer underflow",
            ),
            (
                "gzip",
                gzip,
                "unsupported content encoding in protobuf body: \"gzip\"",
            ),
            (
                "time out of range",
                wire(
                    "v1",
                    "Namespace",
                    &corev1::Namespace {
                        metadata: Some(ObjectMeta {
                            creation_timestamp: time(i64::MAX),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                ),
                "invalid timestamp in protobuf body: 9223372036854775807s 0ns",
            ),
        ];
        for (name, body, expected) in cases {
            match decode(&body) {
                Ok(value) => panic!("{name}: decoded to {value}"),
                Err(error) => assert_eq!(error.to_string(), expected, "{name}"),
            }
        }
    }

    #[test]
    fn zero_times_are_absent() {
        let cases = [
            (
                "empty message, as Go sends an unset Time",
                Some(metav1::Time::default()),
                json!({}),
            ),
            ("Go's zero time", time(GO_ZERO_TIME), json!({})),
            (
                "the Unix epoch is a real time",
                time(0),
                json!({"creationTimestamp": "1970-01-01T00:00:00Z"}),
            ),
            (
                "nanoseconds are cut to seconds",
                Some(metav1::Time {
                    seconds: Some(T0),
                    nanos: Some(999_999_999),
                }),
                json!({"creationTimestamp": "2024-01-02T03:04:05Z"}),
            ),
        ];
        for (name, creation_timestamp, metadata) in cases {
            let namespace = corev1::Namespace {
                metadata: Some(ObjectMeta {
                    creation_timestamp,
                    ..Default::default()
                }),
                ..Default::default()
            };
            let decoded = decode(&wire("v1", "Namespace", &namespace))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(
                decoded,
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": metadata}),
                "{name}"
            );
        }
    }

    #[test]
    fn json_names_follow_kubernetes() {
        let cases = [
            (&[][..], "name", "name"),
            (&[], "r#type", "type"),
            (
                &[],
                "termination_grace_period_seconds",
                "terminationGracePeriodSeconds",
            ),
            (&["clusterIP"], "cluster_ip", "clusterIP"),
        ];
        for (explicit, rust, expected) in cases {
            assert_eq!(json_name(explicit, rust), expected, "{rust}");
        }
    }

    /// Random and mutated bodies must come back as errors or objects, never as a panic.
    #[test]
    fn random_bytes_never_panic() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
        let seeds = [
            hex(KUBECTL_SERVICE),
            hex(KUBECTL_DEPLOYMENT),
            hex(KUBECTL_NAMESPACE),
        ];
        let (mut errors, mut objects) = (0, 0);
        for round in 0..3000 {
            let body: Vec<u8> = match round % 3 {
                0 => (0..rng.random_range(0..64)).map(|_| rng.random()).collect(),
                1 => [
                    MAGIC.to_vec(),
                    (0..rng.random_range(0..256))
                        .map(|_| rng.random())
                        .collect(),
                ]
                .concat(),
                _ => {
                    let mut body = seeds[round % seeds.len()].clone();
                    for _ in 0..rng.random_range(1..4) {
                        let at = rng.random_range(4..body.len());
                        body[at] = rng.random();
                    }
                    body.truncate(rng.random_range(4..=body.len()));
                    body
                }
            };
            match decode(&body) {
                Ok(Value::Object(_)) => objects += 1,
                Ok(other) => panic!("decoded to a non-object: {other}"),
                Err(_) => errors += 1,
            }
        }
        assert!(errors > 1000, "most random bodies are errors: {errors}");
        assert!(objects > 0, "some mutations still decode: {objects}");
        // Every cut inside the raw object (after the envelope's typeMeta) is an error.
        let service = hex(KUBECTL_SERVICE);
        for cut in 22..service.len() - 4 {
            assert!(decode(&service[..cut]).is_err(), "cut at {cut}");
        }
    }
}
