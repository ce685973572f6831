//! The appointments calendar: a week (`?week=YYYY-MM-DD`, the Sunday-started week holding that
//! date) or a day (`?day=YYYY-MM-DD`), in the business's timezone, drawn from its opening hours
//! and slot size (the policy's own day grid). Free slots (the policy's own slot search: notice,
//! window, capacity) link to the new-booking form with the start filled in; each booked
//! appointment carries cancel and move forms. Changes go through the handlers of
//! [`super::bookings`], i.e. the agent's booking tools, and come back here.
//!
//! Test hooks the browser tests rely on (keep them): `#calendar`; free cells
//! `[data-slot="YYYY-MM-DDTHH:MM"]` (links filling `#new-booking`'s `input#start_iso`);
//! `.booking[data-id]` with `button.cancel` and a move form (`input[name=start_iso]`,
//! `button.move`); refusals in `#error`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query};
use axum::routing::get;
use jiff::civil::Date;
use serde::Serialize;

use super::bookings::AppointmentView;
use super::pages::{Ctx, Fields, parse_date, text_dir};
use super::{Answer, Console, ConsoleError};
use crate::store::booking::{AppointmentStatus, Business};

pub(super) fn routes() -> Router<Arc<Console>> {
    Router::new().route("/b/{biz}/calendar", get(calendar))
}

/// The days a calendar page shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CalendarRange {
    /// Seven days from this Sunday.
    Week(Date),
    Day(Date),
}

impl CalendarRange {
    /// `week` wins over `day`; neither: the week holding `today`.
    fn from_dates(week: Option<Date>, day: Option<Date>, today: Date) -> Self {
        match (week, day) {
            (Some(w), _) => CalendarRange::Week(sunday_of(w)),
            (None, Some(d)) => CalendarRange::Day(d),
            (None, None) => CalendarRange::Week(sunday_of(today)),
        }
    }

    /// The range a calendar form came from (hidden `calendar_week` / `calendar_day`), if any.
    pub(super) fn from_fields(fields: &Fields) -> Result<Option<Self>, ConsoleError> {
        let week = parse_date(fields.get("calendar_week"))?;
        let day = parse_date(fields.get("calendar_day"))?;
        Ok(match (week, day) {
            (None, None) => None,
            (w, d) => Some(Self::from_dates(w, d, Date::default())),
        })
    }

    fn days(self) -> Vec<Date> {
        match self {
            CalendarRange::Day(d) => vec![d],
            CalendarRange::Week(first) => (0..7)
                .map_while(|i| first.checked_add(jiff::Span::new().days(i)).ok())
                .collect(),
        }
    }

    /// The query string of this range (`week=…` or `day=…`).
    pub(super) fn query(self) -> String {
        match self {
            CalendarRange::Week(d) => format!("week={d}"),
            CalendarRange::Day(d) => format!("day={d}"),
        }
    }

    /// The same kind of range moved back (`-1`) or forward (`1`).
    fn step(self, by: i64) -> Self {
        let shift = |d: Date, days: i64| d.checked_add(jiff::Span::new().days(days)).unwrap_or(d);
        match self {
            CalendarRange::Week(d) => CalendarRange::Week(shift(d, 7 * by)),
            CalendarRange::Day(d) => CalendarRange::Day(shift(d, by)),
        }
    }
}

fn sunday_of(d: Date) -> Date {
    let back = i64::from(d.weekday().to_sunday_zero_offset());
    d.checked_sub(jiff::Span::new().days(back)).unwrap_or(d)
}

#[derive(Serialize)]
pub(super) struct CalendarView {
    id: String,
    name: String,
    dir: &'static str,
    /// `week` or `day`.
    mode: &'static str,
    /// The hidden field and value that bring a form back to this range.
    range_field: &'static str,
    range_value: String,
    prev: String,
    next: String,
    /// `week=…` of this range (for the "week" link from a day).
    week_query: String,
    days: Vec<DayHead>,
    rows: Vec<CalendarRow>,
    /// Booked appointments that fall on no slot of the grid (hours changed since), per day.
    off_grid: Vec<Vec<AppointmentView>>,
    has_off_grid: bool,
    rooms: Vec<String>,
    pub(super) error: Option<String>,
    message: Option<String>,
    /// The new-booking form's values (a clicked slot, or what was submitted).
    pub(super) fields: BTreeMap<String, String>,
}

#[derive(Serialize)]
struct DayHead {
    date: String,
    weekday: usize,
    closed: bool,
}

#[derive(Serialize)]
struct CalendarRow {
    time: String,
    cells: Vec<CalendarCell>,
}

#[derive(Serialize, Default)]
struct CalendarCell {
    /// On the day's grid (open at this time).
    open: bool,
    /// `YYYY-MM-DDTHH:MM` when a booking can be made here now.
    slot: Option<String>,
    bookings: Vec<AppointmentView>,
}

pub(super) async fn calendar_view(
    ctx: &Ctx,
    b: &Business,
    range: CalendarRange,
) -> Result<CalendarView, ConsoleError> {
    let policy = b.policy().map_err(crate::agent::BookingError::from)?;
    let store = &ctx.c.rt.store;
    let now = ctx.c.now_ms();
    let rooms = store.resources(&b.id).await?;
    let caps: Vec<_> = rooms.iter().map(|r| r.cap()).collect();
    let days = range.days();
    let (first, last) = (days[0], days[days.len() - 1]);
    // Busy times around the range (a day's slots may start before midnight's offset change).
    let edge = |d: Date| {
        d.to_zoned(policy.tz.clone())
            .map(|z| z.timestamp().as_millisecond())
            .unwrap_or(now)
    };
    let from_ms = edge(first) - 86_400_000;
    let to_ms = edge(last) + 2 * 86_400_000;
    let busy = store.busy(&b.id, from_ms, to_ms).await?;
    let free: BTreeSet<i64> = policy
        .find_slots(now, first, last, &caps, &busy, None)
        .into_iter()
        .map(|s| s.start_ms)
        .collect();
    let grids: Vec<Vec<(i64, i64)>> = days.iter().map(|d| policy.day_grid(*d)).collect();
    let times: BTreeSet<String> = grids
        .iter()
        .flatten()
        .map(|(start, _)| policy.time_display(*start))
        .collect();
    let mut rows: Vec<CalendarRow> = times
        .iter()
        .map(|t| CalendarRow {
            time: t.clone(),
            cells: days.iter().map(|_| CalendarCell::default()).collect(),
        })
        .collect();
    let row_of: BTreeMap<&str, usize> = times
        .iter()
        .enumerate()
        .map(|(i, t)| (t.as_str(), i))
        .collect();
    for (d, grid) in grids.iter().enumerate() {
        for (start, _) in grid {
            let cell = &mut rows[row_of[policy.time_display(*start).as_str()]].cells[d];
            cell.open = true;
            if free.contains(start) {
                cell.slot = Some(policy.iso(*start)[..16].to_string());
            }
        }
    }
    let mut off_grid: Vec<Vec<AppointmentView>> = days.iter().map(|_| Vec::new()).collect();
    let dates: Vec<String> = days.iter().map(Date::to_string).collect();
    for a in store.appointments_between(&b.id, from_ms, to_ms).await? {
        if a.status != AppointmentStatus::Booked {
            continue;
        }
        let view = AppointmentView::new(ctx, &policy, &rooms, a);
        let Some(d) = dates.iter().position(|x| *x == view.date) else {
            continue;
        };
        let placed = grids[d]
            .iter()
            .find(|(s, e)| (*s..*e).contains(&view.start_ms))
            .map(|(s, _)| row_of[policy.time_display(*s).as_str()]);
        match placed {
            Some(row) => rows[row].cells[d].bookings.push(view),
            None => off_grid[d].push(view),
        }
    }
    let (range_field, range_value, mode) = match range {
        CalendarRange::Week(d) => ("calendar_week", d.to_string(), "week"),
        CalendarRange::Day(d) => ("calendar_day", d.to_string(), "day"),
    };
    Ok(CalendarView {
        id: b.id.clone(),
        name: b.name.clone(),
        dir: text_dir(&b.language),
        mode,
        range_field,
        range_value,
        prev: range.step(-1).query(),
        next: range.step(1).query(),
        week_query: CalendarRange::Week(sunday_of(first)).query(),
        days: days
            .iter()
            .zip(&grids)
            .map(|(d, g)| DayHead {
                date: d.to_string(),
                weekday: d.weekday().to_sunday_zero_offset() as usize,
                closed: g.is_empty(),
            })
            .collect(),
        rows,
        has_off_grid: off_grid.iter().any(|d| !d.is_empty()),
        off_grid,
        rooms: rooms.into_iter().map(|r| r.name).collect(),
        error: None,
        message: None,
        fields: BTreeMap::new(),
    })
}

#[derive(serde::Deserialize)]
struct CalendarQuery {
    week: Option<String>,
    day: Option<String>,
    /// A clicked free slot: fills the new-booking form.
    start: Option<String>,
    msg: Option<String>,
}

async fn calendar(ctx: Ctx, Path(biz): Path<String>, Query(q): Query<CalendarQuery>) -> Answer {
    let b = ctx.business(&biz).await?;
    let today = b
        .policy()
        .map_err(crate::agent::BookingError::from)?
        .local_date(ctx.c.now_ms());
    let week = parse_date(q.week.as_deref())
        .map_err(|_| ConsoleError::invalid("week", format!("{:?} is not YYYY-MM-DD", q.week)))?;
    let day = parse_date(q.day.as_deref())
        .map_err(|_| ConsoleError::invalid("day", format!("{:?} is not YYYY-MM-DD", q.day)))?;
    let range = CalendarRange::from_dates(week, day, today);
    let mut view = calendar_view(&ctx, &b, range).await?;
    view.message = q.msg;
    if let Some(start) = q.start.filter(|s| !s.trim().is_empty()) {
        view.fields.insert("start_iso".into(), start);
    }
    ctx.render("calendar.html", &view)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(s: &str) -> Date {
        s.parse().unwrap()
    }

    #[test]
    fn a_week_starts_on_the_sunday_holding_the_date() {
        // 2026-11-25 is a Wednesday.
        let r = CalendarRange::from_dates(Some(date("2026-11-25")), None, date("2000-01-01"));
        assert_eq!(r, CalendarRange::Week(date("2026-11-22")));
        assert_eq!(r.days().len(), 7);
        assert_eq!(r.days()[6], date("2026-11-28"));
        assert_eq!(r.step(1).query(), "week=2026-11-29");
        let today = CalendarRange::from_dates(None, None, date("2026-11-22"));
        assert_eq!(today, CalendarRange::Week(date("2026-11-22")));
        let day = CalendarRange::from_dates(None, Some(date("2026-11-25")), date("2000-01-01"));
        assert_eq!(day.days(), vec![date("2026-11-25")]);
        assert_eq!(day.step(-1).query(), "day=2026-11-24");
    }
}
