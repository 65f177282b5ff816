//! Ages as kubectl shows them: apimachinery's `duration.HumanDuration` and the printers' `translateTimestampSince`.

use k8s_openapi::jiff::Timestamp;
use serde_json::Value;

/// A short human duration, exactly as upstream's `HumanDuration` (`45s`, `3m10s`, `5h`, `2d1h`, `2y`).
pub fn human_duration(secs: i64) -> String {
    // Up to one second in the future counts as "now": clocks drift.
    if secs < -1 {
        return "<invalid>".to_owned();
    }
    if secs < 0 {
        return "0s".to_owned();
    }
    if secs < 60 * 2 {
        return format!("{secs}s");
    }
    let minutes = secs / 60;
    if minutes < 10 {
        let s = secs % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = secs / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{dy}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

/// Unix seconds of an RFC 3339 timestamp (`Time` or `MicroTime`); `None` when absent or unparsable.
pub(crate) fn unix_seconds(v: Option<&Value>) -> Option<i64> {
    let ts: Timestamp = v?.as_str()?.parse().ok()?;
    Some(ts.as_second())
}

/// The age of a timestamp as upstream's `translateTimestampSince`: `<unknown>` when missing.
pub(crate) fn since(v: Option<&Value>, now: i64) -> String {
    match unix_seconds(v) {
        Some(t) => human_duration(now - t),
        None => "<unknown>".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_duration_matches_upstream_vectors() {
        const M: i64 = 60;
        const H: i64 = 3600;
        const D: i64 = 24 * H;
        let cases = [
            (-2, "<invalid>"),
            (-1, "0s"),
            (0, "0s"),
            (1, "1s"),
            (70, "70s"),
            (119, "119s"),
            (2 * M, "2m"),
            (190, "3m10s"),
            (9 * M + 59, "9m59s"),
            (10 * M, "10m"),
            (70 * M, "70m"),
            (3 * H - 1, "179m"),
            (3 * H, "3h"),
            (5 * H + 30 * M, "5h30m"),
            (8 * H, "8h"),
            (47 * H, "47h"),
            (48 * H, "2d"),
            (49 * H, "2d1h"),
            (8 * D - 1, "7d23h"),
            (8 * D + 2 * H, "8d"),
            (367 * D, "367d"),
            (365 * 2 * D, "2y"),
            (365 * 2 * D + 25 * H, "2y1d"),
            (365 * 8 * D + 2 * H, "8y"),
        ];
        for (secs, want) in cases {
            assert_eq!(human_duration(secs), want, "{secs}s");
        }
    }

    #[test]
    fn since_parses_rfc3339() {
        let now = 1_700_000_000; // 2023-11-14T22:13:20Z
        let cases = [
            (Some(Value::from("2023-11-14T22:12:35Z")), "45s"),
            (Some(Value::from("2023-11-14T22:13:20.123456Z")), "0s"),
            (Some(Value::from("2023-11-12T22:13:20+00:00")), "2d"),
            (Some(Value::from("2023-11-14T22:13:25Z")), "<invalid>"),
            (Some(Value::from("yesterday")), "<unknown>"),
            (Some(Value::Null), "<unknown>"),
            (None, "<unknown>"),
        ];
        for (v, want) in cases {
            assert_eq!(since(v.as_ref(), now), want, "{v:?}");
        }
    }
}
