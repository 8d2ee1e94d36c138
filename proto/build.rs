//! Generates Rust code (prost messages, tonic clients and servers) from the
//! .proto files under `proto/`, using the vendored `protoc` so no system
//! protobuf compiler is needed.

use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "mvccpb/kv.proto",
    "authpb/auth.proto",
    "etcdserverpb/rpc.proto",
    "v3lockpb/v3lock.proto",
    "v3electionpb/v3election.proto",
    "setpointpb/peer.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Edition 2021: set_var is safe; build scripts are single-threaded here.
    std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?);

    // Read at run time, not with env!(): the compiled build script is shared by every clone
    // that uses the same target directory, and must not remember where it was compiled.
    let include = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("proto");
    println!("cargo:rerun-if-changed={}", include.display());
    println!("cargo:rerun-if-changed=build.rs");

    let files: Vec<PathBuf> = PROTOS.iter().map(|p| include.join(p)).collect();
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
    }

    tonic_prost_build::configure()
        // Raft payloads (snapshots among them) are shared, not copied, when sent again.
        .bytes(".setpointpb.RaftPayload.data")
        // Forwarded writes and verdicts are sliced out of the message, not copied.
        .bytes(".setpointpb.ForwardedWrite.command")
        .bytes(".setpointpb.ForwardVerdict.verdict")
        .build_client(true)
        .build_server(true)
        .compile_protos(&files, &[include])?;
    Ok(())
}
