//! Cost of the wire crate's hot paths: frame decoding, `encode_payload` splitting, and walking a result set.
//!
//! Groups:
//! - `wire/decode/small_x1000`: decode 1000 small frames (20–200 byte payloads) from one buffer (buffer copy
//!   excluded).
//! - `wire/decode/continued_16mib`: decode a 16 MiB + 4 KiB logical packet (two frames) from one buffer.
//! - `wire/decode/continued_16mib_read64k`: the same packet arriving in 64 KiB reads appended to a fresh
//!   buffer, decoding after each read (what a connection does: includes the copies and the buffer growth).
//! - `wire/encode_payload/*`: split a 64 B, a 16 MiB + 4 KiB and a 48 MiB payload into frames (reused buffer).
//! - `wire/walk_1000_rows/*`: `Walker::feed` over the frames of a 4-column, 1000-row text result set, with
//!   and without `CLIENT_DEPRECATE_EOF` (frames built in setup).
//!
//! After criterion, an interleaved ratio pass (see `common/ratio.rs`) prints each case as a multiple of copying
//! the same bytes once (the unavoidable cost of forwarding them), measured in the same rounds.
//!
//! Run: `cargo bench --bench wire`.

use std::hint::black_box;
use std::time::Duration;

use bytes::BytesMut;
use criterion::{BatchSize, Criterion, Throughput};
use rwsplit_wire::frame::{encode_payload, Frame, FrameCodec};
use rwsplit_wire::packet::put_lenenc_int;
use rwsplit_wire::walk::{Expect, Step, Walker};
use rwsplit_wire::MAX_PAYLOAD;
use tokio_util::codec::Decoder;

#[path = "common/ratio.rs"]
mod ratio;

#[path = "../tests/common/packets.rs"]
#[allow(dead_code)] // the scripted servers' helpers
mod packets;
use packets::{column_def, end_of_rows, eof, frames, lenenc_str};

const ROWS: usize = 1000;
const SMALL_FRAMES: usize = 1000;
const BIG: usize = MAX_PAYLOAD + 1 + 4096;
const READ: usize = 64 * 1024;

/// 1000 frames with payloads of 20–200 bytes, back to back.
fn small_frames() -> BytesMut {
    let mut buf = BytesMut::new();
    for i in 0..SMALL_FRAMES {
        let len = 20 + (i * 37) % 181;
        encode_payload(&mut buf, i as u8, &vec![b'x'; len]);
    }
    buf
}

/// One logical packet of 16 MiB + 4 KiB, encoded as two frames.
fn big_packet() -> BytesMut {
    let mut buf = BytesMut::with_capacity(BIG + 8);
    encode_payload(&mut buf, 0, &vec![0xAB; BIG]);
    buf
}

/// Decodes every frame in `buf`; returns how many.
fn decode_all(buf: &mut BytesMut) -> usize {
    let mut codec = FrameCodec;
    let mut n = 0;
    while let Some(f) = codec.decode(buf).expect("valid frames") {
        black_box(&f);
        n += 1;
    }
    n
}

/// Appends `wire` to a fresh buffer 64 KiB at a time, decoding after each read; returns the frame count.
fn read_and_decode(wire: &[u8]) -> usize {
    let mut codec = FrameCodec;
    let mut buf = BytesMut::with_capacity(READ);
    let mut n = 0;
    for chunk in wire.chunks(READ) {
        buf.extend_from_slice(chunk);
        while let Some(f) = codec.decode(&mut buf).expect("valid frames") {
            black_box(&f);
            n += 1;
        }
    }
    n
}

/// The frames of `SELECT id, k, c, pad FROM sbtest1 LIMIT 1000` (text protocol), in either EOF mode.
fn result_set(deprecate_eof: bool) -> Vec<Frame> {
    let mut payloads: Vec<BytesMut> = Vec::with_capacity(ROWS + 8);
    let mut count = BytesMut::new();
    put_lenenc_int(&mut count, 4);
    payloads.push(count);
    for name in ["id", "k", "c", "pad"] {
        payloads.push(column_def(name));
    }
    if !deprecate_eof {
        payloads.push(eof());
    }
    for i in 0..ROWS {
        let mut row = BytesMut::new();
        lenenc_str(&mut row, (i + 1).to_string().as_bytes());
        lenenc_str(&mut row, (5000 + i * 7).to_string().as_bytes());
        lenenc_str(&mut row, format!("{:0>119}", i * 1_000_003).as_bytes());
        lenenc_str(&mut row, format!("{:0>59}", i * 31).as_bytes());
        payloads.push(row);
    }
    payloads.push(end_of_rows(deprecate_eof));
    frames(&payloads)
}

/// Feeds every frame to a fresh walker; returns the final step.
fn walk(frames: &[Frame], deprecate_eof: bool) -> Step {
    let mut w = Walker::new(Expect::ResultSets, deprecate_eof);
    let mut last = Step::More;
    for f in frames {
        last = w.feed(black_box(f)).expect("valid response");
    }
    last
}

fn bench_decode(c: &mut Criterion) {
    let small = small_frames();
    let big = big_packet();
    let mut group = c.benchmark_group("wire/decode");
    group.throughput(Throughput::Elements(SMALL_FRAMES as u64));
    group.bench_function("small_x1000", |b| b.iter_batched_ref(|| small.clone(), decode_all, BatchSize::SmallInput));
    group.throughput(Throughput::Bytes(big.len() as u64));
    group
        .bench_function("continued_16mib", |b| b.iter_batched_ref(|| big.clone(), decode_all, BatchSize::PerIteration));
    group.bench_function("continued_16mib_read64k", |b| b.iter(|| read_and_decode(&big)));
    group.finish();
}

fn bench_encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("wire/encode_payload");
    for (name, size) in [("64b", 64), ("continued_16mib", BIG), ("continued_48mib", 48 << 20)] {
        let payload = vec![0x5Au8; size];
        let mut dst = BytesMut::with_capacity(size + 64);
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(name, |b| {
            b.iter(|| {
                dst.clear();
                encode_payload(&mut dst, 0, black_box(&payload))
            })
        });
    }
    group.finish();
}

fn bench_walk(c: &mut Criterion) {
    let mut group = c.benchmark_group("wire/walk_1000_rows");
    for (name, deprecate_eof) in [("eof", false), ("deprecate_eof", true)] {
        let frames = result_set(deprecate_eof);
        group.throughput(Throughput::Elements(frames.len() as u64));
        group.bench_function(name, |b| b.iter(|| walk(&frames, deprecate_eof)));
    }
    group.finish();
}

/// Copies `frames`' bytes into `dst` (cleared first), as forwarding them to a client buffer would.
fn copy_frames(dst: &mut Vec<u8>, frames: &[Frame]) {
    dst.clear();
    for f in frames {
        dst.extend_from_slice(f.as_bytes());
    }
    black_box(&dst);
}

fn ratios() {
    let small = small_frames();
    let big = big_packet();
    let eof_frames = result_set(false);
    let deof_frames = result_set(true);
    let payload = vec![0x5Au8; BIG];
    let (mut copy_buf, mut decode_buf, mut enc_buf) = (Vec::new(), BytesMut::new(), BytesMut::new());
    let (mut copy_dst, mut copy_rows) = (Vec::new(), Vec::new());

    // Each workload paired with the plain copy of the same bytes.
    let mut cases = vec![
        ratio::Case::new("copy small_x1000", |n| {
            for _ in 0..n {
                copy_buf.clear();
                copy_buf.extend_from_slice(black_box(&small));
                black_box(&copy_buf);
            }
        }),
        ratio::Case::new("copy+decode small_x1000", |n| {
            for _ in 0..n {
                decode_buf.extend_from_slice(black_box(&small));
                black_box(decode_all(&mut decode_buf));
            }
        }),
        ratio::Case::new("copy 16 MiB", |n| {
            for _ in 0..n {
                copy_dst.clear();
                copy_dst.extend_from_slice(black_box(&big));
                black_box(&copy_dst);
            }
        }),
        ratio::Case::new("read64k+decode 16 MiB", |n| {
            for _ in 0..n {
                black_box(read_and_decode(black_box(&big)));
            }
        }),
        ratio::Case::new("encode_payload 16 MiB", |n| {
            for _ in 0..n {
                enc_buf.clear();
                black_box(encode_payload(&mut enc_buf, 0, black_box(&payload)));
            }
        }),
    ];
    let mut walk_cases = vec![
        ratio::Case::new("copy 1000-row result", |n| {
            for _ in 0..n {
                copy_frames(&mut copy_rows, &eof_frames);
            }
        }),
        ratio::Case::new("walk 1000 rows (EOF)", |n| {
            for _ in 0..n {
                black_box(walk(&eof_frames, false));
            }
        }),
        ratio::Case::new("walk 1000 rows (DEPRECATE_EOF)", |n| {
            for _ in 0..n {
                black_box(walk(&deof_frames, true));
            }
        }),
    ];
    cases.append(&mut walk_cases);
    let t = ratio::measure(&mut cases);

    ratio::heading("wire cost ÷ copying the same bytes once");
    println!("{:<38} {:>10}", "case", "÷ copy");
    let rows = [
        ("decode small_x1000 (incl. copy)", "copy+decode small_x1000", "copy small_x1000"),
        ("read64k+decode 16 MiB (incl. copies)", "read64k+decode 16 MiB", "copy 16 MiB"),
        ("encode_payload 16 MiB (incl. copy)", "encode_payload 16 MiB", "copy 16 MiB"),
        ("walk 1000 rows, EOF", "walk 1000 rows (EOF)", "copy 1000-row result"),
        ("walk 1000 rows, DEPRECATE_EOF", "walk 1000 rows (DEPRECATE_EOF)", "copy 1000-row result"),
    ];
    for (label, case, copy) in rows {
        println!("{label:<38} {:>10.2}", t.of(case) / t.of(copy));
    }
    println!(
        "{:<38} {:>10.2}",
        "walk DEPRECATE_EOF ÷ walk EOF",
        t.of("walk 1000 rows (DEPRECATE_EOF)") / t.of("walk 1000 rows (EOF)")
    );
}

fn main() {
    for deprecate_eof in [false, true] {
        let frames = result_set(deprecate_eof);
        let done = walk(&frames, deprecate_eof);
        assert!(matches!(done, Step::Done { error: false, .. }), "result set must walk to Done: {done:?}");
    }
    assert_eq!(decode_all(&mut small_frames()), SMALL_FRAMES);
    assert_eq!(decode_all(&mut big_packet()), 2);
    assert_eq!(read_and_decode(&big_packet()), 2);

    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30)
        .configure_from_args();
    bench_decode(&mut c);
    bench_encode(&mut c);
    bench_walk(&mut c);
    c.final_summary();
    if ratio::enabled() {
        ratios();
    }
}
