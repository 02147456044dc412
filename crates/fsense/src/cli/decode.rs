//! `fsense decode` and `fsense replay`: reading capture files.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Write};
use std::path::Path;
use std::process::ExitCode;

use fsense_proto::{EventRecord, Message};
use serde::Serialize;
use serde_json::json;

use super::setup::{self, Locality};
use super::{DecodeArgs, Failure, ReplayArgs};
use crate::output::report::{health_json, write_json_file};
use crate::pipeline::paths;
use crate::source::capture::{CaptureError, CaptureReader};
use crate::time::{now_ticks, ticks_to_unix_ms};

fn open(path: &Path) -> Result<CaptureReader<BufReader<File>>, Failure> {
    let f = File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    CaptureReader::new(BufReader::with_capacity(1 << 16, f))
        .map_err(|e| Failure::new(e.to_string()))
}

/// A record as `fsense decode` prints it: every field, nothing interpreted away.
#[derive(Serialize)]
struct RawRecord<'a> {
    frame_offset: u64,
    received_at: u64,
    sequence: u64,
    operation: &'static str,
    timestamp: u64,
    time_ms: i64,
    flags: u16,
    pid: u32,
    tid: u32,
    process_create_time: u64,
    status: u32,
    information: u64,
    create_disposition: u32,
    create_options: u32,
    desired_access: u32,
    share_access: u32,
    write_offset: u64,
    write_length: u32,
    path: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    path_units: Option<Vec<u16>>,
    volume: &'a str,
    /// A rename's or link's new name, a clone's source ("" for other records).
    target: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    target_units: Option<Vec<u16>>,
}

fn write_record(
    out: &mut impl Write,
    frame_offset: u64,
    received_at: u64,
    r: &EventRecord<'_>,
) -> io::Result<()> {
    let path = paths::display(&r.path);
    let volume = paths::display(&r.volume);
    let target = paths::display(&r.target);
    let raw = RawRecord {
        frame_offset,
        received_at,
        sequence: r.sequence,
        operation: r.operation.as_str(),
        timestamp: r.timestamp,
        time_ms: ticks_to_unix_ms(r.timestamp),
        flags: r.flags.bits(),
        pid: r.pid,
        tid: r.tid,
        process_create_time: r.process_create_time,
        status: r.status,
        information: r.information,
        create_disposition: r.create_disposition,
        create_options: r.create_options,
        desired_access: r.desired_access,
        share_access: r.share_access,
        write_offset: r.write_offset,
        write_length: r.write_length,
        path: &path.text,
        path_units: (!path.exact).then(|| r.path.iter_units().collect()),
        volume: &volume.text,
        target: &target.text,
        target_units: (!target.exact).then(|| r.target.iter_units().collect()),
    };
    crate::output::json::to_writer(&mut *out, &raw).map_err(io::Error::other)?;
    out.write_all(b"\n")
}

/// Runs `each` over every frame; an error in the file ends the walk after the intact prefix.
fn walk(
    reader: &mut CaptureReader<BufReader<File>>,
    mut each: impl FnMut(u64, u64, &Message<'_>) -> io::Result<()>,
) -> Result<Option<CaptureError>, io::Error> {
    loop {
        match reader.next_frame() {
            Ok(Some(frame)) => each(frame.offset, frame.received_at, &frame.message)?,
            Ok(None) => return Ok(None),
            Err(e) => return Ok(Some(e)),
        }
    }
}

pub fn decode(args: DecodeArgs) -> Result<ExitCode, Failure> {
    let mut reader = open(&args.file)?;
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let damage = walk(&mut reader, |offset, received_at, message| match message {
        Message::Batch(batch) => {
            for r in batch.records() {
                write_record(&mut out, offset, received_at, &r)?;
            }
            Ok(())
        }
        Message::Health(h) => {
            let line = json!({"frame_offset": offset, "received_at": received_at, "health": health_json(h)});
            crate::output::json::to_writer(&mut out, &line).map_err(io::Error::other)?;
            writeln!(out)
        }
    })
    .and_then(|d| out.flush().map(|()| d))
    .map_err(|e| Failure::new(format!("cannot write the output: {e}")))?;
    match damage {
        None => Ok(ExitCode::SUCCESS),
        Some(e) => Err(Failure::new(e.to_string())),
    }
}

pub fn replay(args: ReplayArgs) -> Result<ExitCode, Failure> {
    let mut reader = open(&args.file)?;
    let mut pipeline = setup::pipeline(&args.out, false, None, Locality::Elsewhere)?;
    // The capture's start time names the events: replaying it again gives the same message ids.
    let run = reader.header().created;
    crate::output::sink::options::attach(&mut pipeline, &args.out.sink, run)?;
    let damage = walk(&mut reader, |_, _, message| {
        pipeline.handle_decoded(message).map(|_| ())
    })
    .and_then(|d| pipeline.finish(now_ticks()).map(|()| d))
    .map_err(|e| setup::output_failure(&args.out, &e))?;
    let stats = pipeline.stats();
    if let Some(path) = &args.out.summary_json {
        let mut v = serde_json::to_value(&stats).map_err(|e| e.to_string())?;
        v["frames"] = reader.frames().into();
        v["source"] = reader.header().source.as_str().into();
        v["complete"] = damage.is_none().into();
        write_json_file(path, &v)?;
    }
    match damage {
        None => Ok(ExitCode::SUCCESS),
        Some(e) => Err(Failure::new(e.to_string())),
    }
}
