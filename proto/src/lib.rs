//! Setpoint's protobuf definitions and the Rust code generated from them: the
//! etcd v3 client API (`etcdserverpb`, `mvccpb`, `authpb`, `v3lockpb`,
//! `v3electionpb`), wire-compatible with etcd so etcd clients work unchanged,
//! plus `setpointpb`, the Raft peer transport between Setpoint members.
//!
//! This crate is only types and generated tonic clients/servers; it holds no
//! logic. Message size limits are not set here: servers and clients must raise
//! tonic's 4 MiB default decoding limit themselves (e.g.
//! `max_decoding_message_size`) where large values or snapshots travel.

/// etcd's `mvccpb`: stored key-value records and watch events.
pub mod mvccpb {
    tonic::include_proto!("mvccpb");
}

/// etcd's `authpb`: users, roles, permissions.
pub mod authpb {
    tonic::include_proto!("authpb");
}

/// etcd's `etcdserverpb`: the KV, Watch, Lease, Cluster, Maintenance and Auth
/// services.
pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
}

/// etcd's `v3lockpb`: the Lock service.
pub mod v3lockpb {
    tonic::include_proto!("v3lockpb");
}

/// etcd's `v3electionpb`: the Election service.
pub mod v3electionpb {
    tonic::include_proto!("v3electionpb");
}

/// Setpoint's own Raft peer service (not part of the etcd API).
pub mod setpointpb {
    tonic::include_proto!("setpointpb");
}
