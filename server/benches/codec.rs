//! Request and log-entry encoding: prost encode and decode of etcd's PutRequest (256-byte
//! value), RangeResponse with 1 and 100 key-values (256-byte values), and a compare-and-put
//! TxnRequest; and bincode encode and decode of our Raft log entry carrying a put (what the
//! log store writes per entry and what a follower's append decodes).
//!
//! Encoding is into a fresh `Vec` (as `encode_to_vec` and `bincode::serialize` are used in
//! the server), so an allocation is included; decoding is from a byte slice. Criterion
//! reports bytes per second over the encoded size. Not measured: gRPC framing and HTTP/2,
//! tonic's buffers, compression.

use std::hint::black_box;

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use openraft::entry::RaftEntry;
use prost::Message;
use setpoint_proto::etcdserverpb::{
    compare, request_op, Compare, PutRequest, RangeResponse, RequestOp, ResponseHeader, TxnRequest,
};
use setpoint_proto::mvccpb::KeyValue;
use setpoint_server::raft::types::Entry;
use setpoint_server::raft::{Command, TypeConfig};

const VALUE_BYTES: usize = 256;

fn put_request() -> PutRequest {
    PutRequest {
        key: b"key/0123/45".to_vec(),
        value: vec![b'v'; VALUE_BYTES],
        ..Default::default()
    }
}

fn range_response(kvs: usize) -> RangeResponse {
    RangeResponse {
        header: Some(ResponseHeader {
            cluster_id: 0x1234_5678_9abc_def0,
            member_id: 0x0fed_cba9_8765_4321,
            revision: 1_234_567,
            raft_term: 7,
        }),
        kvs: (0..kvs)
            .map(|i| KeyValue {
                key: format!("key/0123/{i:02}").into_bytes(),
                create_revision: 1_000 + i as i64,
                mod_revision: 1_200_000 + i as i64,
                version: 3,
                value: vec![b'v'; VALUE_BYTES],
                lease: 0,
            })
            .collect(),
        more: false,
        count: kvs as i64,
    }
}

fn txn_request() -> TxnRequest {
    let put = put_request();
    TxnRequest {
        compare: vec![Compare {
            result: compare::CompareResult::Equal as i32,
            target: compare::CompareTarget::Mod as i32,
            key: put.key.clone(),
            target_union: Some(compare::TargetUnion::ModRevision(1_234_567)),
            ..Default::default()
        }],
        success: vec![RequestOp {
            request: Some(request_op::Request::RequestPut(put)),
        }],
        failure: vec![],
    }
}

fn prost_case<M: Message + Default>(group: &mut BenchmarkGroup<'_, WallTime>, name: &str, msg: M) {
    let bytes = msg.encode_to_vec();
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.bench_function(format!("{name}/encode"), |b| {
        b.iter(|| black_box(&msg).encode_to_vec())
    });
    group.bench_function(format!("{name}/decode"), |b| {
        b.iter(|| M::decode(black_box(bytes.as_slice())).expect("decode"))
    });
}

fn codec(c: &mut Criterion) {
    let mut group = c.benchmark_group("codec");
    prost_case(&mut group, "put_request", put_request());
    prost_case(&mut group, "range_response_1", range_response(1));
    prost_case(&mut group, "range_response_100", range_response(100));
    prost_case(&mut group, "txn_request", txn_request());

    let entry = Entry::new_normal(
        openraft::testing::log_id::<TypeConfig>(7, 1, 1_234_567),
        Command::Put(put_request().encode_to_vec()),
    );
    let bytes = bincode::serialize(&entry).expect("serialize");
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.bench_function("raft_entry_put/encode", |b| {
        b.iter(|| bincode::serialize(black_box(&entry)).expect("serialize"))
    });
    group.bench_function("raft_entry_put/decode", |b| {
        b.iter(|| bincode::deserialize::<Entry>(black_box(&bytes)).expect("deserialize"))
    });
    group.finish();
}

criterion_group!(benches_codec, codec);
criterion_main!(benches_codec);
