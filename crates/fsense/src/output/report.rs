//! JSON and text renderings of counters and health snapshots.

use fsense_proto::Health;
use serde_json::{Value, json};

/// A health snapshot as JSON, every field by name.
pub fn health_json(h: &Health) -> Value {
    let (major, minor, patch) = h.driver_version_parts();
    json!({
        "protocol_version": h.protocol_version,
        "driver_version": format!("{major}.{minor}.{patch}"),
        "driver_version_raw": h.driver_version,
        "config_version": h.config_version,
        "build_id": hex(&h.build_id),
        "poll_id": h.poll_id,
        "events_generated": h.events_generated,
        "events_sent": h.events_sent,
        "dropped_queue_full": h.dropped_queue_full,
        "dropped_send": h.dropped_send,
        "dropped": h.dropped(),
        "send_timeouts": h.send_timeouts,
        "send_failures": h.send_failures,
        "batches_sent": h.batches_sent,
        "replies_rejected": h.replies_rejected,
        "acked_sequence": h.acked_sequence,
        "self_excluded": h.self_excluded,
        "queue_high_water": h.queue_high_water,
        "queue_capacity": h.queue_capacity,
        "sensor_flags": h.sensor_flags,
    })
}

/// A health snapshot as `key: value` lines for people.
pub fn health_text(h: &Health) -> String {
    let Value::Object(map) = health_json(h) else {
        return String::new();
    };
    map.iter()
        .map(|(k, v)| match v {
            Value::String(s) => format!("{k}: {s}\n"),
            other => format!("{k}: {other}\n"),
        })
        .collect()
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes `value` as pretty JSON to `path` (with a trailing newline), privately and atomically
/// (see [`crate::output::outfile`]).
pub fn write_json_file(path: &std::path::Path, value: &Value) -> Result<(), String> {
    let mut text = serde_json::to_string_pretty(value).map_err(|e| e.to_string())?;
    text.push('\n');
    crate::output::outfile::write_whole(path, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_json_names_every_counter() {
        let h = Health {
            driver_version: 0x0001_0203,
            build_id: [0xab; 16],
            dropped_queue_full: 2,
            dropped_send: 3,
            ..Health::default()
        };
        let v = health_json(&h);
        assert_eq!(v["driver_version"], "1.2.3");
        assert_eq!(v["dropped"], 5);
        assert_eq!(v["build_id"], "ab".repeat(16));
        assert!(health_text(&h).contains("queue_capacity: 0\n"));
    }
}
