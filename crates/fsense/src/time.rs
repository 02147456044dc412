//! Timestamps. Records carry Windows FILETIME ticks (100 ns since 1601-01-01 UTC) whatever their
//! source; output uses milliseconds since the Unix epoch (OCSF `timestamp_t`).

use std::time::{SystemTime, UNIX_EPOCH};

/// FILETIME ticks between 1601-01-01 and 1970-01-01.
pub const UNIX_EPOCH_TICKS: u64 = 116_444_736_000_000_000;
/// FILETIME ticks per millisecond.
pub const TICKS_PER_MS: u64 = 10_000;

/// Now, in FILETIME ticks.
pub fn now_ticks() -> u64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let ticks = since.as_nanos() / 100;
    UNIX_EPOCH_TICKS.saturating_add(u64::try_from(ticks).unwrap_or(u64::MAX))
}

/// FILETIME ticks to milliseconds since the Unix epoch (negative before 1970).
pub fn ticks_to_unix_ms(ticks: u64) -> i64 {
    let ms = (i128::from(ticks) - i128::from(UNIX_EPOCH_TICKS)) / i128::from(TICKS_PER_MS);
    // |ms| < 2^64 / 10^4 always fits in i64.
    ms as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_and_extremes_convert() {
        assert_eq!(ticks_to_unix_ms(UNIX_EPOCH_TICKS), 0);
        assert_eq!(ticks_to_unix_ms(UNIX_EPOCH_TICKS + 12_345_678), 1234);
        assert_eq!(ticks_to_unix_ms(0), -11_644_473_600_000);
        assert!(ticks_to_unix_ms(u64::MAX) > 0);
        assert!(now_ticks() > UNIX_EPOCH_TICKS);
    }
}
