//! Event time: parsing timestamps, correcting device clock skew, and the calendar day an
//! event belongs to in a workspace's time zone.

use jiff::{civil::Date, tz::TimeZone, SignedDuration, Timestamp};

/// How far in the future an event may claim to be before it is clamped to the receive time.
pub const MAX_FUTURE: SignedDuration = SignedDuration::from_secs(5 * 60);

/// Parses an RFC 3339 / ISO-8601 timestamp that carries an offset (`Z` or `±hh:mm`).
pub fn parse_timestamp(raw: &str) -> Option<Timestamp> {
    raw.trim().parse::<Timestamp>().ok()
}

/// The time kith records for an event.
///
/// - relayed by Segment (`received_at` present): the timestamp is already corrected;
/// - a device clock with `sent_at`: `now − (sent_at − timestamp)`, Segment's skew rule (the
///   caller passes `sent_at` only for device clocks);
/// - otherwise the timestamp as given.
///
/// Then anything more than five minutes after `now` is clamped to `now`.
pub fn event_time(timestamp: Timestamp, sent_at: Option<Timestamp>, relayed: bool, now: Timestamp) -> Timestamp {
    let time = match sent_at {
        Some(sent_at) if !relayed => now.checked_sub(sent_at.duration_since(timestamp)).unwrap_or(timestamp),
        _ => timestamp,
    };
    if time.duration_since(now) > MAX_FUTURE {
        now
    } else {
        time
    }
}

/// The first day of the day numbering: day keys count days since 1970-01-01.
const EPOCH_DATE: Date = Date::constant(1970, 1, 1);

/// The calendar day of `time` in `tz`, as a number of days since 1970-01-01.
///
/// Day keys are what makes "one activity interaction per contact per day" a unique index.
pub fn day_key(time: Timestamp, tz: &TimeZone) -> i32 {
    let date = tz.to_datetime(time).date();
    days_since_epoch(date)
}

/// Days from 1970-01-01 to `date` (negative before it).
pub fn days_since_epoch(date: Date) -> i32 {
    EPOCH_DATE.until(date).map(|span| span.get_days()).unwrap_or_default()
}

/// The calendar date of a day key.
pub fn date_of_day_key(day: i32) -> Date {
    EPOCH_DATE.checked_add(jiff::Span::new().days(i64::from(day))).unwrap_or(EPOCH_DATE)
}

/// Milliseconds since the Unix epoch, the unit timestamps are stored in.
pub fn to_millis(time: Timestamp) -> i64 {
    time.as_millisecond()
}

/// The inverse of [`to_millis`]; out-of-range values saturate.
pub fn from_millis(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).unwrap_or(if ms < 0 { Timestamp::MIN } else { Timestamp::MAX })
}

/// Looks up an IANA time zone name (`Europe/Paris`, `UTC`).
pub fn time_zone(name: &str) -> Option<TimeZone> {
    TimeZone::get(name).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn timestamps_need_an_offset() {
        assert!(parse_timestamp("2020-05-31T17:55:47.263Z").is_some());
        assert!(parse_timestamp("2026-11-23T04:20:02.084+00:00").is_some());
        assert!(parse_timestamp("2024-05-03T19:42:50.066179717Z").is_some());
        assert!(parse_timestamp("2024-13-45T99:00:00Z").is_none());
        assert!(parse_timestamp("yesterday").is_none());
        assert!(parse_timestamp("2024-06-01T10:00:00").is_none());
    }

    #[test]
    fn relayed_events_keep_their_timestamp() {
        let now = ts("2026-01-01T00:00:00Z");
        let t = ts("2024-06-03T16:00:00.292Z");
        assert_eq!(event_time(t, Some(ts("2024-06-03T16:00:00.120Z")), true, now), t);
    }

    #[test]
    fn sdk_events_are_corrected_for_clock_skew() {
        let now = ts("2026-01-01T00:00:00Z");
        let t = ts("2024-06-03T16:10:00.000Z");
        let sent = ts("2024-06-03T16:10:00.050Z");
        assert_eq!(event_time(t, Some(sent), false, now), ts("2025-12-31T23:59:59.950Z"));
        assert_eq!(event_time(t, None, false, now), t, "no sentAt: as given");
    }

    #[test]
    fn the_future_is_clamped_to_now() {
        let now = ts("2026-01-01T00:00:00Z");
        assert_eq!(event_time(ts("2026-01-01T00:04:59Z"), None, false, now), ts("2026-01-01T00:04:59Z"));
        assert_eq!(event_time(ts("2026-01-01T00:05:01Z"), None, false, now), now);
    }

    #[test]
    fn day_keys_follow_the_workspace_time_zone() {
        let utc = TimeZone::UTC;
        let la = time_zone("America/Los_Angeles").unwrap();
        let t = ts("2024-06-05T03:00:00Z");
        assert_eq!(date_of_day_key(day_key(t, &utc)), Date::constant(2024, 6, 5));
        assert_eq!(date_of_day_key(day_key(t, &la)), Date::constant(2024, 6, 4));
        assert_eq!(day_key(ts("1970-01-01T00:00:00Z"), &utc), 0);
        assert_eq!(day_key(ts("1969-12-31T23:00:00Z"), &utc), -1);
    }

    #[test]
    fn millis_round_trip() {
        let t = ts("2020-05-31T17:55:47.263Z");
        assert_eq!(from_millis(to_millis(t)), t);
    }
}
