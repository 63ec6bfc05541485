//! The in-process figures, timed by criterion: the byte pipeline (CRLF, `delimited=length`,
//! gzip) and the typed parser, each beside its baseline on the same seeded stream.
//!
//! Criterion prints its usual report; at the end this prints one `figure ...` line per
//! figure (see `sitebucket_bench::figure`), computed from the fastest of criterion's samples.
//! `SITEBUCKET_BENCH_QUICK=1` shortens warm-up and measurement.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, Throughput};
use sitebucket_bench::figure::{Figure, Op, Target};
use sitebucket_bench::inproc;
use sitebucket_bench::stream::{self, BenchStream, HEAD, HEAD_GZIP, READ_BYTES};
use sitebucket_proto::Framing;

/// The stream's seed, shared with the loopback figures.
const SEED: u64 = 20_240_601;
/// Body bytes of the in-process stream.
const BODY_BYTES: usize = 16 << 20;
const GROUP: &str = "inproc";

fn main() {
    let quick = std::env::var_os("SITEBUCKET_BENCH_QUICK").is_some_and(|v| v != "0");
    let home = criterion_home();
    // Criterion reads its output directory from the environment; set it before it starts.
    std::env::set_var("CRITERION_HOME", &home);
    // Figures come from this run's estimates only.
    let _ = std::fs::remove_dir_all(home.join(GROUP));
    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_millis(if quick { 500 } else { 2000 }))
        .measurement_time(Duration::from_millis(if quick { 2000 } else { 6000 }))
        .sample_size(if quick { 20 } else { 50 })
        .without_plots()
        .configure_from_args();

    let body_bytes = std::env::var("SITEBUCKET_BENCH_BODY_MIB")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .map_or(BODY_BYTES, |mib| mib << 20);
    let stream = BenchStream::generate(SEED, body_bytes);
    let crlf = stream.crlf();
    // The pipelines get the wire as 64 KiB slices of one `Bytes`, as a driver reading into
    // a `BytesMut` block hands them over (see `inproc::pipeline_bytes`).
    let crlf_wire = Bytes::from(stream::response(
        HEAD,
        &stream::chunked(&crlf.bytes, &crlf.line_ends, SEED).wire,
    ));
    let length = stream.length();
    let length_wire = Bytes::from(stream::response(
        HEAD,
        &stream::chunked(&length.bytes, &length.line_ends, SEED).wire,
    ));
    let compressed = stream::gzip(&crlf.bytes, &crlf.line_ends);
    let gzip_wire = Bytes::from(stream::response(
        HEAD_GZIP,
        &stream::chunked(&compressed, &[], SEED).wire,
    ));
    let messages: Vec<Bytes> = stream
        .messages
        .iter()
        .map(|m| Bytes::from(m.clone()))
        .collect();
    let finder = memchr::memmem::Finder::new(b"\r\n");

    // Every path must do the whole job before it is timed.
    let lines = crlf.messages + crlf.keep_alives;
    assert_eq!(inproc::memmem_scan(&finder, &crlf.bytes), lines);
    assert_eq!(
        inproc::pipeline_bytes(&crlf_wire, Framing::Crlf, READ_BYTES).messages,
        crlf.messages
    );
    assert_eq!(
        inproc::naive_client(&crlf_wire, READ_BYTES).messages,
        crlf.messages
    );
    assert_eq!(
        inproc::pipeline_bytes(&length_wire, Framing::Length, READ_BYTES).messages,
        length.messages
    );
    assert_eq!(
        inproc::pipeline_bytes(&gzip_wire, Framing::Crlf, READ_BYTES).messages,
        crlf.messages
    );
    let mut out = vec![0u8; READ_BYTES];
    assert_eq!(
        inproc::gzip_decode_alone(&compressed, &mut out),
        crlf.bytes.len()
    );
    assert_eq!(inproc::parse_typed(&messages), messages.len());

    let mut group = criterion.benchmark_group(GROUP);
    group.throughput(Throughput::Bytes(crlf.bytes.len() as u64));
    group.bench_function("memmem_crlf", |b| {
        b.iter(|| inproc::memmem_scan(&finder, &crlf.bytes))
    });
    let mut copy = vec![0u8; crlf.bytes.len()];
    group.bench_function("memcpy_body", |b| {
        b.iter(|| {
            copy.copy_from_slice(&crlf.bytes);
            std::hint::black_box(&copy);
        })
    });
    let mut read_buffer = vec![0u8; READ_BYTES];
    group.bench_function("copy_in_reads", |b| {
        b.iter(|| inproc::copy_in_reads(&crlf.bytes, &mut read_buffer))
    });
    group.bench_function("pipeline_crlf", |b| {
        b.iter(|| inproc::pipeline_bytes(&crlf_wire, Framing::Crlf, READ_BYTES))
    });
    group.bench_function("naive_client", |b| {
        b.iter(|| inproc::naive_client(&crlf_wire, READ_BYTES))
    });
    group.throughput(Throughput::Bytes(length.bytes.len() as u64));
    group.bench_function("memmem_length", |b| {
        b.iter(|| inproc::memmem_scan(&finder, &length.bytes))
    });
    group.bench_function("pipeline_length", |b| {
        b.iter(|| inproc::pipeline_bytes(&length_wire, Framing::Length, READ_BYTES))
    });
    group.throughput(Throughput::Bytes(crlf.bytes.len() as u64));
    group.bench_function("gzip_decode_alone", |b| {
        b.iter(|| inproc::gzip_decode_alone(&compressed, &mut out))
    });
    group.bench_function("gzip_pipeline", |b| {
        b.iter(|| inproc::pipeline_bytes(&gzip_wire, Framing::Crlf, READ_BYTES))
    });
    group.throughput(Throughput::Bytes(stream.payload_bytes() as u64));
    group.bench_function("parse_default_parser", |b| {
        b.iter(|| inproc::parse_typed(&messages))
    });
    group.bench_function("parse_serde_value", |b| {
        b.iter(|| inproc::parse_value(&messages))
    });
    group.bench_function("parse_ignored_any", |b| {
        b.iter(|| inproc::parse_ignored(&messages))
    });
    group.finish();
    criterion.final_summary();

    let ns = |id: &str| fastest_ns(&home, id);
    let mbps = |bytes: usize, id: &str| ns(id).map(|t| bytes as f64 * 1e3 / t);
    let body = crlf.bytes.len();
    let payload = stream.payload_bytes();
    let mut figures = Vec::new();
    let mut add = |figure: Option<Figure>, what: &str| match figure {
        Some(f) => figures.push(f),
        None => eprintln!("bench: no criterion estimate for {what} (filtered out?)"),
    };
    let (memmem, pipeline) = (mbps(body, "memmem_crlf"), mbps(body, "pipeline_crlf"));
    add(
        both(pipeline, memmem).map(|(v, b)| {
            Figure::new(
                "pipeline_crlf",
                v,
                "MB/s",
                "memmem_crlf_scan",
                b,
                Target::Ratio(Op::AtLeast, 0.4),
            )
        }),
        "pipeline_crlf",
    );
    add(
        both(mbps(body, "memcpy_body"), memmem).map(|(v, b)| {
            Figure::new(
                "memcpy_body",
                v,
                "MB/s",
                "memmem_crlf_scan",
                b,
                Target::Reported,
            )
        }),
        "memcpy_body",
    );
    add(
        both(pipeline, mbps(body, "copy_in_reads")).map(|(v, b)| {
            Figure::new(
                "pipeline_crlf_vs_copy",
                v,
                "MB/s",
                "copy_in_64k_reads",
                b,
                Target::Reported,
            )
        }),
        "copy_in_reads",
    );
    add(
        both(pipeline, mbps(body, "naive_client")).map(|(v, b)| {
            Figure::new(
                "pipeline_crlf_vs_naive",
                v,
                "MB/s",
                "naive_client",
                b,
                Target::Ratio(Op::AtLeast, 1.0),
            )
        }),
        "naive_client",
    );
    add(
        both(
            mbps(length.bytes.len(), "pipeline_length"),
            mbps(length.bytes.len(), "memmem_length"),
        )
        .map(|(v, b)| {
            Figure::new(
                "pipeline_length",
                v,
                "MB/s",
                "memmem_crlf_scan",
                b,
                Target::Ratio(Op::AtLeast, 0.4),
            )
        }),
        "pipeline_length",
    );
    add(
        both(ns("gzip_pipeline"), ns("gzip_decode_alone")).map(|(v, b)| {
            Figure::new(
                "gzip_pipeline",
                v / 1e6,
                "ms",
                "flate2_decode_alone",
                b / 1e6,
                Target::Ratio(Op::AtMost, 1.1),
            )
        }),
        "gzip",
    );
    let typed = mbps(payload, "parse_default_parser");
    add(
        both(typed, mbps(payload, "parse_serde_value")).map(|(v, b)| {
            Figure::new(
                "default_parser_vs_value",
                v,
                "MB/s",
                "serde_json_value",
                b,
                Target::Ratio(Op::AtLeast, 3.0),
            )
        }),
        "parse_serde_value",
    );
    add(
        both(typed, mbps(payload, "parse_ignored_any")).map(|(v, b)| {
            Figure::new(
                "default_parser_vs_ignored_any",
                v,
                "MB/s",
                "serde_json_ignored_any",
                b,
                Target::Ratio(Op::AtLeast, 0.75),
            )
        }),
        "parse_ignored_any",
    );
    println!(
        "# in-process stream: seed {SEED}, {} messages, {} keep-alives, body {} bytes, gzip {} bytes, reads of {READ_BYTES} bytes; fastest criterion sample of each",
        crlf.messages,
        crlf.keep_alives,
        body,
        compressed.len()
    );
    for figure in figures {
        println!("{figure}");
    }
}

fn both(a: Option<f64>, b: Option<f64>) -> Option<(f64, f64)> {
    Some((a?, b?))
}

/// `<target>/bench/criterion`, found from this executable (`<target>/profiling/deps/inproc-*`).
fn criterion_home() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return home.into();
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| {
            Some(
                exe.parent()?
                    .parent()?
                    .parent()?
                    .join("bench")
                    .join("criterion"),
            )
        })
        .unwrap_or_else(|| PathBuf::from("target/bench/criterion"))
}

/// The fastest time of one iteration of benchmark `id` over criterion's samples, in
/// nanoseconds, from the samples criterion just wrote. On a machine shared with other work
/// the fastest sample is the one least disturbed, so baselines and figures measured minutes
/// apart stay comparable; criterion's own report (median, spread) is in the log.
fn fastest_ns(home: &Path, id: &str) -> Option<f64> {
    let path = home.join(GROUP).join(id).join("new").join("sample.json");
    let text = std::fs::read_to_string(path).ok()?;
    let sample: serde_json::Value = serde_json::from_str(&text).ok()?;
    let iters = sample["iters"].as_array()?;
    let times = sample["times"].as_array()?;
    iters
        .iter()
        .zip(times)
        .filter_map(|(n, t)| Some(t.as_f64()? / n.as_f64()?))
        .filter(|t| t.is_finite() && *t > 0.0)
        .min_by(f64::total_cmp)
}
