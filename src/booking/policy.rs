//! Booking policy and slot computation. Sans-IO: every function takes `now_ms` and the data it
//! needs (existing appointments, resources) and returns slots, verdicts or suggestions.
//!
//! Times are unix milliseconds outside and civil times in the business's timezone inside: the
//! slot grid starts at the weekday's opening time (midnight for 24/7 businesses) and steps by
//! `slot_size_min`; an appointment lasts one slot. DST is handled by jiff (a civil time that does
//! not exist is resolved the "compatible" way, i.e. moved forward).

use jiff::civil::{Date, DateTime, Time, Weekday};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("unknown timezone {0:?}")]
    Timezone(String),
    #[error("invalid opening hours: {0}")]
    OpeningHours(String),
    #[error("invalid policy value: {0}")]
    Value(&'static str),
}

/// Whose capacity a booking consumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConcurrencyScope {
    /// Each resource (room) takes up to its own limit at once.
    Resource,
    /// The whole business takes up to `concurrency_limit` at once, whatever the resource.
    Business,
}

impl ConcurrencyScope {
    pub fn as_str(self) -> &'static str {
        match self {
            ConcurrencyScope::Resource => "resource",
            ConcurrencyScope::Business => "business",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [ConcurrencyScope::Resource, ConcurrencyScope::Business]
            .into_iter()
            .find(|scope| scope.as_str() == s)
    }
}

#[derive(Debug, Clone)]
pub struct Policy {
    pub tz: TimeZone,
    /// Indexed by `Weekday::to_sunday_zero_offset()`; `None` = closed that day.
    pub opening_hours: [Option<(Time, Time)>; 7],
    pub allow_24_7: bool,
    pub slot_size_min: i64,
    pub min_notice_min: i64,
    pub booking_window_days: i64,
    pub require_phone_before_booking: bool,
    pub scope: ConcurrencyScope,
    /// Used when `scope` is `Business`.
    pub business_limit: i64,
}

/// A resource as the policy sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceCap {
    pub id: String,
    pub limit: i64,
}

/// An existing (not cancelled) appointment occupying capacity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Busy {
    pub resource_id: Option<String>,
    pub start_ms: i64,
    pub end_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    pub start_ms: i64,
    pub end_ms: i64,
    /// Resources with room left in this slot (all of them for a business-wide limit).
    pub resource_ids: Vec<String>,
}

/// Why a requested start time cannot be booked. One enum for the tools' `{ok:false, error,
/// reason}` (`code`) and the offline dialog's explanation, so both say the same thing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Refusal {
    /// The start is already in the past.
    PastTime,
    /// The business is closed all that day.
    ClosedDay,
    /// Before opening or at/after the last slot of the day.
    OutsideHours,
    /// Within opening hours but not on the slot grid (e.g. 10:15 with hourly slots).
    OffGrid,
    /// Inside the minimum notice.
    TooSoon,
    /// Beyond the booking window.
    OutsideWindow,
    /// On the grid and allowed, but no capacity left.
    Full,
}

impl Refusal {
    /// The machine-readable `error` of a tool failure.
    pub fn code(self) -> &'static str {
        match self {
            Refusal::PastTime => "past_time",
            Refusal::ClosedDay => "closed_day",
            Refusal::OutsideHours => "outside_hours",
            Refusal::OffGrid => "off_grid",
            Refusal::TooSoon => "too_soon",
            Refusal::OutsideWindow => "outside_window",
            Refusal::Full => "full",
        }
    }

    /// The `reason` of a tool failure, for the model.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::PastTime => "that time has already passed; ask for another time",
            Refusal::ClosedDay => "the business is closed that day; offer the suggestions",
            Refusal::OutsideHours => "outside opening hours that day; offer the suggestions",
            Refusal::OffGrid => "not a bookable start time; offer the suggestions",
            Refusal::TooSoon => "inside the minimum notice; offer the suggestions",
            Refusal::OutsideWindow => "beyond the booking window; offer the suggestions",
            Refusal::Full => "that time is fully booked; offer the suggestions",
        }
    }

    pub fn from_code(code: &str) -> Option<Refusal> {
        [
            Refusal::PastTime,
            Refusal::ClosedDay,
            Refusal::OutsideHours,
            Refusal::OffGrid,
            Refusal::TooSoon,
            Refusal::OutsideWindow,
            Refusal::Full,
        ]
        .into_iter()
        .find(|r| r.code() == code)
    }
}

/// A requested start time: bookable, or refused with its reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartVerdict {
    Ok { start_ms: i64, end_ms: i64 },
    Refused(Refusal),
}

pub const WEEKDAY_KEYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

fn parse_hhmm(s: &str) -> Result<Time, PolicyError> {
    let bad = || PolicyError::OpeningHours(format!("bad time {s:?}"));
    let (h, m) = s.split_once(':').ok_or_else(bad)?;
    let h: i8 = h.trim().parse().map_err(|_| bad())?;
    let m: i8 = m.trim().parse().map_err(|_| bad())?;
    if h == 24 && m == 0 {
        // "24:00" closes at midnight: the last representable instant of the day.
        return Ok(Time::MAX);
    }
    Time::new(h, m, 0, 0).map_err(|_| bad())
}

/// Parses `{"sun":["10:00","22:00"], ...}`; missing weekdays are closed.
pub fn parse_opening_hours(json: &str) -> Result<[Option<(Time, Time)>; 7], PolicyError> {
    let value: serde_json::Value =
        serde_json::from_str(json).map_err(|e| PolicyError::OpeningHours(e.to_string()))?;
    let obj = value
        .as_object()
        .ok_or_else(|| PolicyError::OpeningHours("not an object".into()))?;
    let mut out = [None; 7];
    for (key, span) in obj {
        let day = WEEKDAY_KEYS
            .iter()
            .position(|k| k == key)
            .ok_or_else(|| PolicyError::OpeningHours(format!("unknown weekday {key:?}")))?;
        let pair = span
            .as_array()
            .filter(|a| a.len() == 2)
            .ok_or_else(|| PolicyError::OpeningHours(format!("{key}: want [open, close]")))?;
        let open = parse_hhmm(pair[0].as_str().unwrap_or(""))?;
        let close = parse_hhmm(pair[1].as_str().unwrap_or(""))?;
        if close <= open {
            return Err(PolicyError::OpeningHours(format!(
                "{key}: closes before it opens"
            )));
        }
        out[day] = Some((open, close));
    }
    Ok(out)
}

pub fn timezone(name: &str) -> Result<TimeZone, PolicyError> {
    TimeZone::get(name).map_err(|_| PolicyError::Timezone(name.into()))
}

fn ms_of(dt: DateTime, tz: &TimeZone) -> Option<i64> {
    dt.to_zoned(tz.clone())
        .ok()
        .map(|z| z.timestamp().as_millisecond())
}

impl Policy {
    pub fn validate(&self) -> Result<(), PolicyError> {
        if self.slot_size_min <= 0 || self.slot_size_min > 24 * 60 {
            return Err(PolicyError::Value("slot_size_min must be 1..=1440"));
        }
        if self.min_notice_min < 0 || self.booking_window_days < 0 {
            return Err(PolicyError::Value(
                "min_notice_min and booking_window_days must be >= 0",
            ));
        }
        if self.business_limit < 1 && self.scope == ConcurrencyScope::Business {
            return Err(PolicyError::Value("concurrency_limit must be >= 1"));
        }
        Ok(())
    }

    /// The business's local date at `now_ms`.
    pub fn local_date(&self, now_ms: i64) -> Date {
        self.local(now_ms).date()
    }

    /// `now_ms` in the business's timezone: the `now` the temporal parser reads relative to.
    pub fn zoned(&self, ms: i64) -> jiff::Zoned {
        Timestamp::from_millisecond(ms)
            .unwrap_or(Timestamp::UNIX_EPOCH)
            .to_zoned(self.tz.clone())
    }

    pub fn local(&self, ms: i64) -> DateTime {
        Timestamp::from_millisecond(ms)
            .unwrap_or(Timestamp::UNIX_EPOCH)
            .to_zoned(self.tz.clone())
            .datetime()
    }

    /// Every slot of `date` on the grid, ignoring notice, window and capacity.
    pub fn day_grid(&self, date: Date) -> Vec<(i64, i64)> {
        let (open, close) = if self.allow_24_7 {
            (Time::midnight(), Time::MAX)
        } else {
            match self.opening_hours[date.weekday().to_sunday_zero_offset() as usize] {
                Some(hours) => hours,
                None => return Vec::new(),
            }
        };
        let step = self.slot_size_min.minutes();
        let close_dt = if close == Time::MAX {
            // Runs to the next midnight, so a 24/7 day has exactly 24h / slot slots.
            date.tomorrow()
                .map(|d| d.to_datetime(Time::midnight()))
                .ok()
        } else {
            Some(date.to_datetime(close))
        };
        let Some(close_dt) = close_dt else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut start = date.to_datetime(open);
        while let Ok(end) = start.checked_add(step) {
            if end > close_dt {
                break;
            }
            if let (Some(s), Some(e)) = (ms_of(start, &self.tz), ms_of(end, &self.tz)) {
                // A DST gap can fold two grid points onto one instant; keep the first.
                if out.last().is_none_or(|&(ls, _)| ls < s) {
                    out.push((s, e));
                }
            }
            start = end;
        }
        out
    }

    fn notice_ok(&self, now_ms: i64, start_ms: i64) -> bool {
        start_ms >= now_ms + self.min_notice_min * 60_000
    }

    fn window_ok(&self, now_ms: i64, start_ms: i64) -> bool {
        // The window counts whole local days: today plus `booking_window_days`.
        let last = self
            .local_date(now_ms)
            .checked_add(self.booking_window_days.days())
            .ok();
        let day = self.local(start_ms).date();
        last.is_some_and(|last| day <= last)
    }

    /// Resources with capacity left for `[start, end)`. `resource` narrows the choice.
    pub fn free_resources(
        &self,
        start_ms: i64,
        end_ms: i64,
        resources: &[ResourceCap],
        busy: &[Busy],
        resource: Option<&str>,
    ) -> Vec<String> {
        let overlapping = || {
            busy.iter()
                .filter(move |b| b.start_ms < end_ms && start_ms < b.end_ms)
        };
        let candidates = resources
            .iter()
            .filter(|r| resource.is_none_or(|want| want == r.id));
        match self.scope {
            ConcurrencyScope::Business => {
                if (overlapping().count() as i64) < self.business_limit {
                    candidates.map(|r| r.id.clone()).collect()
                } else {
                    Vec::new()
                }
            }
            ConcurrencyScope::Resource => candidates
                .filter(|r| {
                    let used = overlapping()
                        .filter(|b| b.resource_id.as_deref() == Some(r.id.as_str()))
                        .count() as i64;
                    used < r.limit
                })
                .map(|r| r.id.clone())
                .collect(),
        }
    }

    /// Bookable slots on the given local dates (inclusive range), in time order.
    pub fn find_slots(
        &self,
        now_ms: i64,
        from: Date,
        to: Date,
        resources: &[ResourceCap],
        busy: &[Busy],
        resource: Option<&str>,
    ) -> Vec<Slot> {
        let mut out = Vec::new();
        let mut day = from;
        // Never walk further than the booking window allows, whatever range was asked.
        let mut guard = 0;
        while day <= to && guard <= self.booking_window_days + 1 {
            guard += 1;
            for (start_ms, end_ms) in self.day_grid(day) {
                if !self.notice_ok(now_ms, start_ms) || !self.window_ok(now_ms, start_ms) {
                    continue;
                }
                let free = self.free_resources(start_ms, end_ms, resources, busy, resource);
                let has_room = if resources.is_empty() {
                    self.scope == ConcurrencyScope::Business
                        && (busy
                            .iter()
                            .filter(|b| b.start_ms < end_ms && start_ms < b.end_ms)
                            .count() as i64)
                            < self.business_limit
                } else {
                    !free.is_empty()
                };
                if has_room {
                    out.push(Slot {
                        start_ms,
                        end_ms,
                        resource_ids: free,
                    });
                }
            }
            match day.tomorrow() {
                Ok(next) => day = next,
                Err(_) => break,
            }
        }
        out
    }

    /// Checks a requested local start time.
    pub fn check_start(
        &self,
        now_ms: i64,
        start: DateTime,
        resources: &[ResourceCap],
        busy: &[Busy],
        resource: Option<&str>,
    ) -> StartVerdict {
        let refused = StartVerdict::Refused;
        let Some(start_ms) = ms_of(start, &self.tz) else {
            return refused(Refusal::OffGrid);
        };
        if start_ms < now_ms {
            return refused(Refusal::PastTime);
        }
        // Beyond the window nothing on that day can be booked: the telling reason.
        if !self.window_ok(now_ms, start_ms) {
            return refused(Refusal::OutsideWindow);
        }
        let grid = self.day_grid(start.date());
        let Some(&(s, e)) = grid.iter().find(|(s, _)| *s == start_ms) else {
            let (Some(first), Some(last)) = (grid.first(), grid.last()) else {
                return refused(Refusal::ClosedDay);
            };
            return if start_ms < first.0 || start_ms > last.0 {
                refused(Refusal::OutsideHours)
            } else if !self.notice_ok(now_ms, start_ms) {
                // "in half an hour": the telling reason is the notice, not the grid.
                refused(Refusal::TooSoon)
            } else {
                refused(Refusal::OffGrid)
            };
        };
        if !self.notice_ok(now_ms, s) {
            return refused(Refusal::TooSoon);
        }
        if !self.window_ok(now_ms, s) {
            return refused(Refusal::OutsideWindow);
        }
        if self
            .free_resources(s, e, resources, busy, resource)
            .is_empty()
        {
            return refused(Refusal::Full);
        }
        StartVerdict::Ok {
            start_ms: s,
            end_ms: e,
        }
    }

    /// The `count` bookable slots nearest to `target_ms` (by distance, ties to the earlier),
    /// searched from the day before to the day after the target.
    pub fn nearest_slots(
        &self,
        now_ms: i64,
        target_ms: i64,
        resources: &[ResourceCap],
        busy: &[Busy],
        resource: Option<&str>,
        count: usize,
    ) -> Vec<Slot> {
        let day = self.local(target_ms).date();
        let from = day.yesterday().unwrap_or(day);
        let to = day.tomorrow().unwrap_or(day);
        let mut slots = self.find_slots(now_ms, from, to, resources, busy, resource);
        slots.sort_by_key(|s| ((s.start_ms - target_ms).abs(), s.start_ms));
        slots.truncate(count);
        slots.sort_by_key(|s| s.start_ms);
        slots
    }

    /// ISO-8601 with the business's offset, e.g. `2026-11-24T10:00:00+02:00`.
    pub fn iso(&self, ms: i64) -> String {
        let z = Timestamp::from_millisecond(ms)
            .unwrap_or(Timestamp::UNIX_EPOCH)
            .to_zoned(self.tz.clone());
        z.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string()
    }

    /// `10:00` in the business's timezone.
    pub fn time_display(&self, ms: i64) -> String {
        let t = self.local(ms);
        format!("{:02}:{:02}", t.hour(), t.minute())
    }

    pub fn date_iso(&self, ms: i64) -> String {
        self.local(ms).date().to_string()
    }
}

/// Parses an ISO start time: with an offset (`2026-11-24T10:00:00+02:00`, `...Z`) it is an
/// instant converted to the business's local time; without one it is already local.
pub fn parse_local_datetime(s: &str, tz: &TimeZone) -> Option<DateTime> {
    let s = s.trim();
    if let Ok(ts) = s.parse::<Timestamp>() {
        return Some(ts.to_zoned(tz.clone()).datetime());
    }
    if let Ok(z) = s.parse::<jiff::Zoned>() {
        return Some(z.with_time_zone(tz.clone()).datetime());
    }
    s.parse::<DateTime>().ok()
}

pub fn weekday_index(w: Weekday) -> usize {
    w.to_sunday_zero_offset() as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    const HOURS: &str = r#"{"sun":["10:00","22:00"],"mon":["10:00","22:00"],"tue":["10:00","22:00"],"wed":["10:00","22:00"],"thu":["10:00","23:00"],"fri":["09:00","15:00"]}"#;

    fn policy() -> Policy {
        Policy {
            tz: timezone("Asia/Jerusalem").unwrap(),
            opening_hours: parse_opening_hours(HOURS).unwrap(),
            allow_24_7: false,
            slot_size_min: 60,
            min_notice_min: 60,
            booking_window_days: 30,
            require_phone_before_booking: true,
            scope: ConcurrencyScope::Resource,
            business_limit: 1,
        }
    }

    fn rooms() -> Vec<ResourceCap> {
        ["dubai", "ny"]
            .iter()
            .map(|id| ResourceCap {
                id: id.to_string(),
                limit: 1,
            })
            .collect()
    }

    fn at(p: &Policy, dt: DateTime) -> i64 {
        ms_of(dt, &p.tz).unwrap()
    }

    #[test]
    fn grid_follows_opening_hours_and_is_closed_on_saturday() {
        let p = policy();
        // 2026-11-24 is a Tuesday: 10:00..22:00 is 12 one-hour slots.
        let grid = p.day_grid(date(2026, 11, 24));
        assert_eq!(grid.len(), 12);
        assert_eq!(p.time_display(grid[0].0), "10:00");
        assert_eq!(p.time_display(grid[11].0), "21:00");
        assert!(p.day_grid(date(2026, 11, 28)).is_empty(), "Saturday closed");
        assert_eq!(p.iso(grid[0].0), "2026-11-24T10:00:00+02:00");
    }

    #[test]
    fn twenty_four_seven_grid_covers_the_whole_day() {
        let mut p = policy();
        p.allow_24_7 = true;
        p.slot_size_min = 30;
        let grid = p.day_grid(date(2026, 11, 28));
        assert_eq!(grid.len(), 48);
        assert_eq!(p.time_display(grid[0].0), "00:00");
        assert_eq!(p.time_display(grid[47].0), "23:30");
    }

    #[test]
    fn dst_day_grid_has_no_duplicate_or_missing_instants() {
        let mut p = policy();
        p.allow_24_7 = true;
        // Israel springs forward on Friday 2026-03-27 at 02:00: that day has 23 hours.
        let grid = p.day_grid(date(2026, 3, 27));
        assert_eq!(grid.len(), 23);
        assert!(grid.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn slots_respect_notice_window_and_capacity() {
        let p = policy();
        let now = at(&p, date(2026, 11, 24).at(9, 30, 0, 0));
        let slots = p.find_slots(
            now,
            date(2026, 11, 24),
            date(2026, 11, 24),
            &rooms(),
            &[],
            None,
        );
        // 10:00 is within the 60-minute notice; 11:00 is the first.
        assert_eq!(p.time_display(slots[0].start_ms), "11:00");
        let eleven = slots[0].clone();
        let busy = vec![
            Busy {
                resource_id: Some("dubai".into()),
                start_ms: eleven.start_ms,
                end_ms: eleven.end_ms,
            },
            Busy {
                resource_id: Some("ny".into()),
                start_ms: eleven.start_ms,
                end_ms: eleven.end_ms,
            },
        ];
        let slots = p.find_slots(
            now,
            date(2026, 11, 24),
            date(2026, 11, 24),
            &rooms(),
            &busy,
            None,
        );
        assert_eq!(
            p.time_display(slots[0].start_ms),
            "12:00",
            "both rooms taken at 11"
        );
        let only_dubai_busy = &busy[..1];
        let slots = p.find_slots(
            now,
            date(2026, 11, 24),
            date(2026, 11, 24),
            &rooms(),
            only_dubai_busy,
            None,
        );
        assert_eq!(slots[0].resource_ids, vec!["ny".to_string()]);
        // Outside the 30-day window nothing is offered.
        assert!(
            p.find_slots(now, date(2027, 1, 3), date(2027, 1, 3), &rooms(), &[], None)
                .is_empty()
        );
    }

    #[test]
    fn business_wide_limit_counts_all_resources() {
        let mut p = policy();
        p.scope = ConcurrencyScope::Business;
        p.business_limit = 1;
        let now = at(&p, date(2026, 11, 24).at(8, 0, 0, 0));
        let ten = at(&p, date(2026, 11, 24).at(10, 0, 0, 0));
        let busy = vec![Busy {
            resource_id: Some("dubai".into()),
            start_ms: ten,
            end_ms: ten + 3_600_000,
        }];
        let v = p.check_start(
            now,
            date(2026, 11, 24).at(10, 0, 0, 0),
            &rooms(),
            &busy,
            Some("ny"),
        );
        assert_eq!(v, StartVerdict::Refused(Refusal::Full));
    }

    #[test]
    fn start_verdicts_and_nearest_suggestions() {
        let p = policy();
        let now = at(&p, date(2026, 11, 23).at(12, 0, 0, 0));
        let off = date(2026, 11, 24).at(10, 15, 0, 0);
        assert_eq!(
            p.check_start(now, off, &rooms(), &[], None),
            StartVerdict::Refused(Refusal::OffGrid)
        );
        let near = p.nearest_slots(now, at(&p, off), &rooms(), &[], None, 2);
        let shown: Vec<_> = near.iter().map(|s| p.time_display(s.start_ms)).collect();
        assert_eq!(shown, ["10:00", "11:00"]);
        let cases = [
            (date(2026, 11, 23).at(12, 0, 0, 0), Refusal::TooSoon),
            (date(2026, 11, 23).at(12, 30, 0, 0), Refusal::TooSoon), // off the grid, too soon
            (date(2026, 11, 23).at(11, 0, 0, 0), Refusal::PastTime),
            (date(2026, 11, 24).at(23, 0, 0, 0), Refusal::OutsideHours), // after closing
            (date(2026, 11, 24).at(8, 0, 0, 0), Refusal::OutsideHours),  // before opening
            (date(2026, 11, 28).at(11, 0, 0, 0), Refusal::ClosedDay),    // Saturday
            (date(2027, 2, 1).at(10, 0, 0, 0), Refusal::OutsideWindow),
            (date(2027, 1, 15).at(19, 0, 0, 0), Refusal::OutsideWindow), // also after closing
        ];
        for (dt, want) in cases {
            assert_eq!(
                p.check_start(now, dt, &rooms(), &[], None),
                StartVerdict::Refused(want),
                "{dt}"
            );
        }
        for r in [Refusal::PastTime, Refusal::ClosedDay, Refusal::Full] {
            assert_eq!(Refusal::from_code(r.code()), Some(r));
        }
        assert!(matches!(
            p.check_start(now, date(2026, 11, 24).at(10, 0, 0, 0), &rooms(), &[], None),
            StartVerdict::Ok { .. }
        ));
    }

    #[test]
    fn opening_hours_errors_are_specific() {
        assert!(parse_opening_hours(r#"{"xyz":["10:00","12:00"]}"#).is_err());
        assert!(parse_opening_hours(r#"{"sun":["12:00","10:00"]}"#).is_err());
        assert!(parse_opening_hours(r#"{"sun":["1000","12:00"]}"#).is_err());
        assert!(parse_opening_hours("[]").is_err());
    }

    #[test]
    fn iso_inputs_with_and_without_offset() {
        let tz = timezone("Asia/Jerusalem").unwrap();
        let a = parse_local_datetime("2026-11-24T10:00:00", &tz).unwrap();
        let b = parse_local_datetime("2026-11-24T08:00:00Z", &tz).unwrap();
        let c = parse_local_datetime("2026-11-24T10:00:00+02:00", &tz).unwrap();
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert!(parse_local_datetime("tomorrow", &tz).is_none());
    }
}
