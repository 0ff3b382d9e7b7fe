//! Codec micro-benchmarks: the per-message costs on the broker's hot path.
//!
//! - decode: a buffer holding many PUBLISH packets back to back is decoded packet by
//!   packet, as a connection's read buffer would be (so `split_to`/`freeze` on a shared
//!   buffer is included); the buffer copy per batch is setup, not measured.
//! - encode: `encode_publish` of the same message into a reused output buffer, as the
//!   fan-out path does per subscriber.
//!
//! Run: `cargo bench -p gatehouse-benches --bench codec`.

#![allow(
    clippy::unwrap_used,
    clippy::disallowed_methods,
    reason = "a measuring tool, not the broker: a setup failure aborts the run; /proc and result files are read and written synchronously"
)]

use std::hint::black_box;
use std::num::NonZeroU16;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use gatehouse_protocol::codec::{decode, encode, encode_publish, PublishView};
use gatehouse_protocol::{Packet, ProtocolVersion, Publish, PublishProperties, QoS};

const PACKETS_PER_BATCH: usize = 1000;
const MAX_PACKET: u32 = 1 << 20;

fn properties() -> PublishProperties {
    PublishProperties {
        payload_format_indicator: Some(1),
        message_expiry_interval: Some(3600),
        topic_alias: None,
        response_topic: Some("replies/device-42".into()),
        correlation_data: Some(Bytes::from_static(b"req-0001")),
        user_properties: vec![("trace-id".into(), "4bf92f3577b34da6".into())],
        subscription_identifiers: Vec::new(),
        content_type: Some("application/json".into()),
    }
}

fn publish(version: ProtocolVersion) -> Publish {
    Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: "sensors/building-7/floor-3/room-12/temperature".into(),
        packet_id: NonZeroU16::new(42),
        properties: match version {
            ProtocolVersion::V5 => properties(),
            ProtocolVersion::V311 => PublishProperties::default(),
        },
        payload: Bytes::from(vec![0x5A; 64]),
    }
}

/// `PACKETS_PER_BATCH` copies of the encoded PUBLISH, back to back.
fn stream(version: ProtocolVersion) -> BytesMut {
    let packet = Packet::Publish(publish(version));
    let mut out = BytesMut::new();
    for _ in 0..PACKETS_PER_BATCH {
        encode(&packet, version, &mut out).expect("bench packet encodes");
    }
    out
}

fn bench_decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Elements(PACKETS_PER_BATCH as u64));
    for (name, version) in [
        ("publish_v5_64b_props", ProtocolVersion::V5),
        ("publish_v311_64b", ProtocolVersion::V311),
    ] {
        let template = stream(version);
        group.bench_function(name, |b| {
            b.iter_batched_ref(
                || template.clone(),
                |buf| {
                    while let Ok(Some(p)) = decode(buf, Some(version), MAX_PACKET) {
                        black_box(p);
                    }
                    assert!(buf.is_empty());
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

fn bench_encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode_publish");
    group.throughput(Throughput::Elements(1));
    for (name, version) in [
        ("publish_v5_64b_props", ProtocolVersion::V5),
        ("publish_v311_64b", ProtocolVersion::V311),
    ] {
        let p = publish(version);
        let view = PublishView {
            dup: p.dup,
            qos: p.qos,
            retain: p.retain,
            topic: &p.topic,
            packet_id: p.packet_id,
            properties: &p.properties,
            topic_alias: None,
            message_expiry_interval: Some(3599),
            subscription_identifiers: &[7],
            payload: &p.payload,
        };
        let mut out = BytesMut::with_capacity(4096);
        group.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                let n = encode_publish(black_box(&view), version, &mut out);
                black_box(n).expect("encodes");
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_decode, bench_encode);
criterion_main!(benches);
