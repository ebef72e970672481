//! Local calendar dates → UTC instants, in a tenant's IANA time zone (DST-correct).
//!
//! Sources speak in local dates ("move-in 2027-03-28"); the engine only knows UTC instants.
//! This is the one place that converts, with the time-zone database compiled into the binary
//! (chrono-tz) so a Lambda image without `/usr/share/zoneinfo` converts the same way as a laptop.

use chrono::{LocalResult, NaiveDate, NaiveDateTime, Offset, TimeZone};
use chrono_tz::Tz;

use crate::model::Instant;

/// A named IANA time zone (`Europe/Vienna`), checked once when the configuration is read.
#[derive(Debug, Clone)]
pub struct Zone {
    name: String,
    tz: Tz,
}

impl Zone {
    /// Looks the name up in the time-zone database; the error names it.
    pub fn parse(name: &str) -> Result<Self, String> {
        name.parse::<Tz>()
            .map(|tz| Self { name: name.to_owned(), tz })
            .map_err(|_| format!("unknown time zone {name:?} (use an IANA name such as \"Europe/Vienna\")"))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn wall_clock(&self, t: Instant) -> String {
        t.with_timezone(&self.tz).format("%Y-%m-%d %H:%M").to_string()
    }

    /// `from → until` on this zone's wall clock (∞ for an open side), labelled once.
    pub fn format_window(&self, w: &crate::model::Window) -> String {
        let side = |t: Option<Instant>| t.map_or("∞".to_owned(), |t| self.wall_clock(t));
        format!("{} → {} ({})", side(w.from), side(w.until), self.name)
    }

    /// `t` as the location's wall clock, labelled with the zone: `2026-12-01 14:00 Europe/Vienna`.
    pub fn format(&self, t: Instant) -> String {
        format!("{} {}", self.wall_clock(t), self.name)
    }

    /// The first instant of `date` in this zone: usually 00:00 local, or the end of the gap on
    /// the rare days whose midnight a DST change skips.
    pub fn start_of_day(&self, date: NaiveDate) -> Result<Instant, String> {
        let midnight = date.and_hms_opt(0, 0, 0).ok_or_else(|| format!("date {date} is out of range"))?;
        self.instant_of(midnight)
    }

    /// The local calendar date at instant `t` in this zone.
    pub fn date_of(&self, t: Instant) -> Result<NaiveDate, String> {
        Ok(t.with_timezone(&self.tz).date_naive())
    }

    /// The instant of a local wall-clock time in this zone. A time that a DST change repeats is
    /// read as the clocks showed it before the change (the earlier instant); one that a change
    /// skips is moved on by the length of the gap (02:30 on a spring-forward night is 03:30),
    /// which for a skipped midnight is the end of the gap. This is RFC 5545's and jiff's
    /// "compatible" rule.
    pub fn instant_of(&self, t: NaiveDateTime) -> Result<Instant, String> {
        let utc = match self.tz.from_local_datetime(&t) {
            LocalResult::Single(z) | LocalResult::Ambiguous(z, _) => z.with_timezone(&chrono::Utc),
            LocalResult::None => {
                // In a gap: read it with the offset in force before the gap began (no gap is
                // longer than a day), which moves it on by the gap's length.
                let before = t - chrono::Duration::days(1);
                let offset = match self.tz.from_local_datetime(&before) {
                    LocalResult::Single(z) | LocalResult::Ambiguous(z, _) => z.offset().fix(),
                    LocalResult::None => return Err(format!("{t} in {}: no such local time", self.name)),
                };
                (t - offset).and_utc()
            }
        };
        Ok(utc)
    }

    /// The local wall-clock time at instant `t` in this zone (for filters a source reads as
    /// local time).
    pub fn local_of(&self, t: Instant) -> Result<NaiveDateTime, String> {
        Ok(t.with_timezone(&self.tz).naive_local())
    }

    /// The first instant after `date` ends (start of the next day): the exclusive end of an
    /// access that lasts "to the end of" `date`.
    pub fn end_of_day(&self, date: NaiveDate) -> Result<Instant, String> {
        let next = date.succ_opt().ok_or_else(|| format!("date {date} is out of range"))?;
        self.start_of_day(next)
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;

    fn day(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).expect("valid date")
    }

    fn utc(y: i32, m: u32, d: u32, h: u32) -> Instant {
        Utc.with_ymd_and_hms(y, m, d, h, 0, 0).single().expect("valid")
    }

    #[test]
    fn vienna_midnight_follows_the_dst_changes() {
        let vienna = Zone::parse("Europe/Vienna").expect("known zone");
        // Winter time (UTC+1) the day before summer time starts (2027-03-28, 02:00 → 03:00).
        assert_eq!(vienna.start_of_day(day(2027, 3, 27)), Ok(utc(2027, 3, 26, 23)));
        // The change day itself still starts in winter time; it lasts only 23 hours.
        assert_eq!(vienna.start_of_day(day(2027, 3, 28)), Ok(utc(2027, 3, 27, 23)));
        assert_eq!(vienna.end_of_day(day(2027, 3, 28)), Ok(utc(2027, 3, 28, 22)));
        // Summer time (UTC+2) until 2027-10-31 03:00 → 02:00; that day lasts 25 hours.
        assert_eq!(vienna.start_of_day(day(2027, 6, 1)), Ok(utc(2027, 5, 31, 22)));
        assert_eq!(vienna.start_of_day(day(2027, 10, 31)), Ok(utc(2027, 10, 30, 22)));
        assert_eq!(vienna.end_of_day(day(2027, 10, 31)), Ok(utc(2027, 10, 31, 23)));
    }

    #[test]
    fn a_midnight_skipped_by_dst_starts_the_day_after_the_gap() {
        // Santiago moved its clocks from 00:00 to 01:00 on 2022-09-11.
        let santiago = Zone::parse("America/Santiago").expect("known zone");
        assert_eq!(santiago.start_of_day(day(2022, 9, 11)), Ok(utc(2022, 9, 11, 4)));
    }

    #[test]
    fn a_window_reads_on_the_local_wall_clock_labelled_once() {
        use chrono::TimeZone;
        let z = Zone::parse("Europe/Vienna").expect("zone");
        let from = chrono::Utc.with_ymd_and_hms(2026, 7, 1, 8, 0, 0).single().expect("time");
        let w = crate::model::Window::new(Some(from), None);
        assert_eq!(z.format_window(&w), "2026-07-01 10:00 → ∞ (Europe/Vienna)", "summer: UTC+2");
    }

    #[test]
    fn skipped_local_times_move_on_by_the_gap_and_repeated_ones_read_as_before_the_change() {
        let vienna = Zone::parse("Europe/Vienna").expect("known zone");
        let at = |d: NaiveDate, h: u32, m: u32| d.and_hms_opt(h, m, 0).expect("valid time");
        // 2027-03-28 02:30 does not exist in Vienna (02:00 → 03:00): it is 03:30 CEST.
        let gap = vienna.instant_of(at(day(2027, 3, 28), 2, 30)).expect("in the gap");
        assert_eq!(gap, utc(2027, 3, 28, 1) + chrono::Duration::minutes(30));
        // 2027-10-31 02:30 happens twice: the first one, still summer time (UTC+2).
        let fold = vienna.instant_of(at(day(2027, 10, 31), 2, 30)).expect("in the fold");
        assert_eq!(fold, utc(2027, 10, 31, 0) + chrono::Duration::minutes(30));
        assert_eq!(vienna.local_of(fold), Ok(at(day(2027, 10, 31), 2, 30)));
        assert_eq!(vienna.date_of(utc(2027, 10, 30, 22)), Ok(day(2027, 10, 31)));
    }

    #[test]
    fn unknown_zones_are_named() {
        let err = Zone::parse("Europe/Wien").expect_err("not a zone");
        assert!(err.contains("Europe/Wien"), "{err}");
        assert_eq!(
            Zone::parse("UTC").map(|z| z.start_of_day(day(2026, 12, 1))).ok(),
            Some(Ok(utc(2026, 12, 1, 0)))
        );
    }
}
