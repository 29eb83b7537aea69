//! Times of messages as shown: the hour and minute in a time zone (the system's when running;
//! a fixed one in tests).

use jiff::Timestamp;
use jiff::tz::TimeZone;
use siren_client_core::model::Millis;

/// `HH:MM` of a moment in `tz`; `--:--` if it is outside what a calendar can show.
pub(crate) fn hh_mm(at: Millis, tz: &TimeZone) -> String {
    let Ok(ms) = i64::try_from(at) else {
        return "--:--".to_owned();
    };
    match Timestamp::from_millisecond(ms) {
        Ok(ts) => {
            let dt = tz.to_datetime(ts);
            format!("{:02}:{:02}", dt.hour(), dt.minute())
        }
        Err(_) => "--:--".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hours_and_minutes_in_the_zone() {
        // 2025-01-01T13:45:30Z
        let at = 1_735_739_130_000;
        assert_eq!(hh_mm(at, &TimeZone::UTC), "13:45");
        let plus2 = TimeZone::fixed(jiff::tz::offset(2));
        assert_eq!(hh_mm(at, &plus2), "15:45");
        assert_eq!(hh_mm(u64::MAX, &TimeZone::UTC), "--:--");
    }
}
