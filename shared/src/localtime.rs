//! Local calendar dates → UTC instants, in a tenant's IANA time zone (DST-correct).
//!
//! Sources speak in local dates ("move-in 2027-03-28"); the engine only knows UTC instants.
//! This is the one place that converts, with the time-zone database bundled into the binary so
//! a Lambda image without `/usr/share/zoneinfo` converts the same way as a laptop.

use chrono::{Datelike, NaiveDate};

use crate::model::Instant;

/// A named IANA time zone (`Europe/Vienna`), checked once when the configuration is read.
#[derive(Debug, Clone)]
pub struct Zone {
    name: String,
    tz: jiff::tz::TimeZone,
}

impl Zone {
    /// Looks the name up in the time-zone database; the error names it.
    pub fn parse(name: &str) -> Result<Self, String> {
        jiff::tz::TimeZone::get(name)
            .map(|tz| Self { name: name.to_owned(), tz })
            .map_err(|_| format!("unknown time zone {name:?} (use an IANA name such as \"Europe/Vienna\")"))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `t` as the location's wall clock, labelled with the zone: `2026-12-01 14:00 Europe/Vienna`.
    /// `from → until` on this zone's wall clock (∞ for an open side), labelled once.
    pub fn format_window(&self, w: &crate::model::Window) -> String {
        let side = |t: Option<Instant>| {
            t.map_or("∞".to_owned(), |t| match jiff::Timestamp::from_second(t.timestamp()) {
                Ok(ts) => ts.to_zoned(self.tz.clone()).strftime("%Y-%m-%d %H:%M").to_string(),
                Err(_) => t.format("%Y-%m-%d %H:%M UTC").to_string(),
            })
        };
        format!("{} → {} ({})", side(w.from), side(w.until), self.name)
    }

    pub fn format(&self, t: Instant) -> String {
        match jiff::Timestamp::from_second(t.timestamp()) {
            Ok(ts) => format!("{} {}", ts.to_zoned(self.tz.clone()).strftime("%Y-%m-%d %H:%M"), self.name),
            Err(_) => t.format("%Y-%m-%d %H:%M UTC").to_string(),
        }
    }

    /// The first instant of `date` in this zone: usually 00:00 local, or the end of the gap on
    /// the rare days whose midnight a DST change skips.
    pub fn start_of_day(&self, date: NaiveDate) -> Result<Instant, String> {
        let out_of_range = || format!("date {date} is out of range");
        let year = i16::try_from(date.year()).map_err(|_| out_of_range())?;
        // Month and day come from a valid chrono date, so they fit.
        let civil =
            jiff::civil::Date::new(year, date.month() as i8, date.day() as i8).map_err(|_| out_of_range())?;
        let zoned = civil
            .to_zoned(self.tz.clone())
            .and_then(|z| z.start_of_day())
            .map_err(|e| format!("{date} in {}: {e}", self.name))?;
        let ts = zoned.timestamp();
        chrono::DateTime::from_timestamp(ts.as_second(), ts.subsec_nanosecond().max(0) as u32)
            .ok_or_else(out_of_range)
    }

    /// The local calendar date at instant `t` in this zone.
    pub fn date_of(&self, t: Instant) -> Result<NaiveDate, String> {
        let ts = jiff::Timestamp::from_second(t.timestamp()).map_err(|e| format!("instant {t}: {e}"))?;
        let d = ts.to_zoned(self.tz.clone()).date();
        NaiveDate::from_ymd_opt(i32::from(d.year()), d.month() as u32, d.day() as u32)
            .ok_or_else(|| format!("instant {t} is out of range"))
    }

    /// The instant of a local wall-clock time in this zone. A time that a DST change skips or
    /// repeats is read as the clocks showed it before the change (jiff's "compatible" rule).
    pub fn instant_of(&self, t: chrono::NaiveDateTime) -> Result<Instant, String> {
        let out_of_range = || format!("local time {t} is out of range");
        let (date, time) = (t.date(), t.time());
        let year = i16::try_from(date.year()).map_err(|_| out_of_range())?;
        use chrono::Timelike;
        // Every field comes from a valid chrono value, so each fits.
        let civil = jiff::civil::DateTime::new(
            year,
            date.month() as i8,
            date.day() as i8,
            time.hour() as i8,
            time.minute() as i8,
            time.second().min(59) as i8,
            0,
        )
        .map_err(|_| out_of_range())?;
        let ts =
            civil.to_zoned(self.tz.clone()).map_err(|e| format!("{t} in {}: {e}", self.name))?.timestamp();
        chrono::DateTime::from_timestamp(ts.as_second(), time.nanosecond().min(999_999_999))
            .ok_or_else(out_of_range)
    }

    /// The local wall-clock time at instant `t` in this zone (for filters a source reads as
    /// local time).
    pub fn local_of(&self, t: Instant) -> Result<chrono::NaiveDateTime, String> {
        let local = self.tz.to_datetime(
            jiff::Timestamp::from_second(t.timestamp()).map_err(|e| format!("instant {t}: {e}"))?,
        );
        let date = NaiveDate::from_ymd_opt(i32::from(local.year()), local.month() as u32, local.day() as u32);
        let time = chrono::NaiveTime::from_hms_opt(
            local.hour() as u32,
            local.minute() as u32,
            local.second() as u32,
        );
        date.zip(time).map(|(d, t)| d.and_time(t)).ok_or_else(|| format!("instant {t} is out of range"))
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
    fn unknown_zones_are_named() {
        let err = Zone::parse("Europe/Wien").expect_err("not a zone");
        assert!(err.contains("Europe/Wien"), "{err}");
        assert_eq!(
            Zone::parse("UTC").map(|z| z.start_of_day(day(2026, 12, 1))).ok(),
            Some(Ok(utc(2026, 12, 1, 0)))
        );
    }
}
