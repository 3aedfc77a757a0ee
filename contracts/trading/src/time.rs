//! Block time (milliseconds since the Unix epoch, UTC) as RFC 3339 text, for receipts a
//! person reads ("block time 2026-05-01T10:00:03Z is after deadline ...").

use alloc::string::String;

/// Formats `ms` as `YYYY-MM-DDTHH:MM:SSZ`, with `.mmm` when the milliseconds are not zero.
pub fn format_ms(ms: u64) -> String {
    let secs = ms / 1000;
    let millis = ms % 1000;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    let mut out = String::with_capacity(24);
    let fields = [(year, 4, '-'), (month, 2, '-'), (day, 2, 'T')];
    let clock = [
        (rem / 3600, 2, ':'),
        (rem % 3600 / 60, 2, ':'),
        (rem % 60, 2, '.'),
    ];
    for (value, width, then) in fields.into_iter().chain(clock) {
        push_padded(&mut out, value, width);
        out.push(then);
    }
    // The seconds end in '.' for the milliseconds, dropped when there are none.
    if millis == 0 {
        out.pop();
    } else {
        push_padded(&mut out, millis, 3);
    }
    out.push('Z');
    out
}

/// Appends `value` in decimal, zero-padded to `width` digits. By hand rather than with
/// `format!`: core::fmt's padding is costly in wasm (see `ids::hex32`).
fn push_padded(out: &mut String, value: u64, width: usize) {
    let mut digits = [b'0'; 20];
    let mut start = digits.len();
    let mut rest = value;
    while rest > 0 {
        start -= 1;
        digits[start] = b"0123456789"[(rest % 10) as usize];
        rest /= 10;
    }
    let start = start.min(digits.len().saturating_sub(width));
    out.extend(digits[start..].iter().map(|&d| char::from(d)));
}

/// Days since 1970-01-01 to (year, month, day): Howard Hinnant's `civil_from_days`.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(format_ms(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_ms(1_777_629_603_000), "2026-05-01T10:00:03Z");
        assert_eq!(format_ms(951_782_400_250), "2000-02-29T00:00:00.250Z");
        assert_eq!(format_ms(1_000_000_000_007), "2001-09-09T01:46:40.007Z");
        // A year past 9999 takes the digits it needs.
        assert_eq!(format_ms(253_402_300_800_000), "10000-01-01T00:00:00Z");
    }
}
