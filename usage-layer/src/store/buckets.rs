//! Time buckets (minute, hour, day, week, month) in a configurable IANA time zone.
//!
//! A bucket is identified by the UTC instant at which it starts in the zone. Minute and
//! hour buckets keep the UTC offset of the instant they contain, so the repeated hour
//! when clocks go back is two buckets, never one; days, weeks and months start at local
//! midnight (or the first instant after it, where midnight is skipped).
//!
//! ```
//! use chrono::{TimeZone, Utc, Weekday};
//! use usage_layer::store::{BucketType, Buckets};
//!
//! let seoul = Buckets::new("Asia/Seoul".parse().unwrap(), Weekday::Mon);
//! let at = Utc.with_ymd_and_hms(2026, 3, 4, 20, 30, 0).unwrap(); // 05:30 on the 5th in Seoul
//! assert_eq!(seoul.start(BucketType::Day, at), Utc.with_ymd_and_hms(2026, 3, 4, 15, 0, 0).unwrap());
//! assert_eq!(seoul.start(BucketType::Month, at), Utc.with_ymd_and_hms(2026, 2, 28, 15, 0, 0).unwrap());
//! ```

use std::fmt;
use std::str::FromStr;

use chrono::{
    DateTime, Datelike, Days, Duration, Months, NaiveDate, TimeZone, Timelike, Utc, Weekday,
};
use chrono_tz::Tz;

/// The width of a bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BucketType {
    /// One minute.
    Minute,
    /// One hour.
    Hour,
    /// One local day.
    Day,
    /// One local week, from the configured first day.
    Week,
    /// One local calendar month.
    Month,
}

impl BucketType {
    /// Every bucket type, narrowest first.
    pub const ALL: [BucketType; 5] = [
        BucketType::Minute,
        BucketType::Hour,
        BucketType::Day,
        BucketType::Week,
        BucketType::Month,
    ];

    /// The name stored in `usage_aggregates.bucket_type`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Minute => "minute",
            Self::Hour => "hour",
            Self::Day => "day",
            Self::Week => "week",
            Self::Month => "month",
        }
    }
}

impl fmt::Display for BucketType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A bucket type name that is none of `minute`, `hour`, `day`, `week`, `month`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown bucket type {0:?} (expected minute, hour, day, week or month)")]
pub struct UnknownBucketType(pub String);

impl FromStr for BucketType {
    type Err = UnknownBucketType;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.as_str() == name)
            .ok_or_else(|| UnknownBucketType(name.to_owned()))
    }
}

/// How instants map to buckets: a time zone and the first day of the week.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Buckets {
    zone: Tz,
    week_start: Weekday,
}

impl Default for Buckets {
    /// UTC, weeks from Monday.
    fn default() -> Self {
        Self::new(Tz::UTC, Weekday::Mon)
    }
}

impl Buckets {
    /// Buckets in `zone`, weeks starting on `week_start`.
    pub fn new(zone: Tz, week_start: Weekday) -> Self {
        Self { zone, week_start }
    }

    /// The time zone.
    pub fn zone(&self) -> Tz {
        self.zone
    }

    /// The first day of a week.
    pub fn week_start(&self) -> Weekday {
        self.week_start
    }

    /// The start of the `kind` bucket that contains `at`.
    pub fn start(&self, kind: BucketType, at: DateTime<Utc>) -> DateTime<Utc> {
        let local = at.with_timezone(&self.zone);
        // Minutes and hours: step back within the same UTC offset.
        let into_minute = Duration::seconds(local.second().into())
            + Duration::nanoseconds(local.nanosecond().into());
        match kind {
            BucketType::Minute => at - into_minute,
            BucketType::Hour => at - into_minute - Duration::minutes(local.minute().into()),
            BucketType::Day => self.day_start(local.date_naive()),
            BucketType::Week => {
                let back = local.weekday().days_since(self.week_start);
                self.day_start(local.date_naive() - Days::new(back.into()))
            }
            BucketType::Month => {
                self.day_start(local.date_naive().with_day(1).expect("day 1 exists"))
            }
        }
    }

    /// The start of the bucket after the one starting at `start`.
    pub fn next(&self, kind: BucketType, start: DateTime<Utc>) -> DateTime<Utc> {
        let date = start.with_timezone(&self.zone).date_naive();
        match kind {
            BucketType::Minute => self.start(kind, start + Duration::minutes(1)),
            BucketType::Hour => self.start(kind, start + Duration::hours(1)),
            BucketType::Day => self.day_start(date + Days::new(1)),
            BucketType::Week => self.day_start(date + Days::new(7)),
            BucketType::Month => self.day_start(date + Months::new(1)),
        }
    }

    /// The starts of the `kind` buckets that overlap `[from, to)`, in order.
    pub fn series(
        &self,
        kind: BucketType,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> impl Iterator<Item = DateTime<Utc>> + '_ {
        std::iter::successors(Some(self.start(kind, from)), move |&start| {
            Some(self.next(kind, start))
        })
        .take_while(move |&start| start < to)
    }

    /// The first instant of `date` in the zone: midnight, or the first instant after a
    /// skipped midnight (or after a whole skipped day, as Samoa skipped 2011-12-30).
    pub fn day_start(&self, date: NaiveDate) -> DateTime<Utc> {
        let midnight = date.and_hms_opt(0, 0, 0).expect("midnight exists");
        // Look forward in 15-minute steps, up to two days: no zone has skipped more.
        (0..192)
            .map(|step| midnight + Duration::minutes(15 * step))
            .find_map(|time| self.zone.from_local_datetime(&time).earliest())
            .map_or_else(|| midnight.and_utc(), |instant| instant.with_timezone(&Utc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
    }

    #[test]
    fn utc_buckets() {
        let buckets = Buckets::default();
        let at = utc(2026, 11, 28, 18, 42, 17) + Duration::milliseconds(250);
        assert_eq!(
            buckets.start(BucketType::Minute, at),
            utc(2026, 11, 28, 18, 42, 0)
        );
        assert_eq!(
            buckets.start(BucketType::Hour, at),
            utc(2026, 11, 28, 18, 0, 0)
        );
        assert_eq!(
            buckets.start(BucketType::Day, at),
            utc(2026, 11, 28, 0, 0, 0)
        );
        // 2026-11-28 is a Saturday: the week started on Monday the 23rd.
        assert_eq!(
            buckets.start(BucketType::Week, at),
            utc(2026, 11, 23, 0, 0, 0)
        );
        assert_eq!(
            buckets.start(BucketType::Month, at),
            utc(2026, 11, 1, 0, 0, 0)
        );
        let sunday_weeks = Buckets::new(Tz::UTC, Weekday::Sun);
        assert_eq!(
            sunday_weeks.start(BucketType::Week, at),
            utc(2026, 11, 22, 0, 0, 0)
        );
    }

    #[test]
    fn half_hour_offsets_shift_hour_buckets() {
        let india = Buckets::new("Asia/Kolkata".parse().unwrap(), Weekday::Mon);
        let at = utc(2026, 1, 1, 10, 10, 0); // 15:40 local
        assert_eq!(india.start(BucketType::Hour, at), utc(2026, 1, 1, 9, 30, 0));
        assert_eq!(
            india.start(BucketType::Day, at),
            utc(2025, 12, 31, 18, 30, 0)
        );
    }

    #[test]
    fn repeated_hour_is_two_buckets() {
        let new_york = Buckets::new("America/New_York".parse().unwrap(), Weekday::Mon);
        // 2026-11-01 01:30 happens twice: EDT (05:30 UTC) and EST (06:30 UTC).
        let first = new_york.start(BucketType::Hour, utc(2026, 11, 1, 5, 30, 0));
        let second = new_york.start(BucketType::Hour, utc(2026, 11, 1, 6, 30, 0));
        assert_eq!(first, utc(2026, 11, 1, 5, 0, 0));
        assert_eq!(second, utc(2026, 11, 1, 6, 0, 0));
        // That day is 25 hours long.
        let day = new_york.start(BucketType::Day, utc(2026, 11, 1, 12, 0, 0));
        assert_eq!(
            new_york.next(BucketType::Day, day) - day,
            Duration::hours(25)
        );
    }

    #[test]
    fn skipped_midnight_starts_the_day_after_the_gap() {
        // Santiago skips from 00:00 to 01:00 when DST starts (2026-09-06).
        let santiago = Buckets::new("America/Santiago".parse().unwrap(), Weekday::Mon);
        let start = santiago.start(BucketType::Day, utc(2026, 9, 6, 12, 0, 0));
        assert_eq!(start.with_timezone(&santiago.zone()).hour(), 1);
    }

    #[test]
    fn a_skipped_day_starts_with_the_next_one() {
        let apia = Buckets::new("Pacific/Apia".parse().unwrap(), Weekday::Mon);
        let skipped = NaiveDate::from_ymd_opt(2011, 12, 30).unwrap();
        assert_eq!(
            apia.day_start(skipped),
            apia.day_start(skipped.succ_opt().unwrap())
        );
    }

    #[test]
    fn series_covers_the_range() {
        let buckets = Buckets::default();
        let hours: Vec<_> = buckets
            .series(
                BucketType::Hour,
                utc(2026, 1, 1, 10, 30, 0),
                utc(2026, 1, 1, 13, 0, 0),
            )
            .collect();
        assert_eq!(
            hours,
            [
                utc(2026, 1, 1, 10, 0, 0),
                utc(2026, 1, 1, 11, 0, 0),
                utc(2026, 1, 1, 12, 0, 0)
            ]
        );
        let months: Vec<_> = buckets
            .series(
                BucketType::Month,
                utc(2026, 1, 31, 0, 0, 0),
                utc(2026, 3, 2, 0, 0, 0),
            )
            .collect();
        assert_eq!(
            months,
            [
                utc(2026, 1, 1, 0, 0, 0),
                utc(2026, 2, 1, 0, 0, 0),
                utc(2026, 3, 1, 0, 0, 0)
            ]
        );
    }

    proptest::proptest! {
        /// For any instant, zone and week start: the bucket holding an instant starts at
        /// or before it and ends after it, and a bucket's start is its own bucket's start.
        #[test]
        fn every_instant_lies_in_its_bucket(
            seconds in 0i64..4_102_444_800, // 1970 to 2100
            zone in proptest::sample::select(vec![
                "UTC", "Asia/Seoul", "Asia/Kolkata", "America/New_York",
                "America/Santiago", "Australia/Lord_Howe", "Asia/Kathmandu", "Europe/London",
            ]),
            week_start in proptest::sample::select(vec![Weekday::Mon, Weekday::Sun, Weekday::Sat]),
        ) {
            let buckets = Buckets::new(zone.parse().unwrap(), week_start);
            let at = DateTime::from_timestamp(seconds, 0).unwrap();
            for kind in BucketType::ALL {
                let start = buckets.start(kind, at);
                let next = buckets.next(kind, start);
                proptest::prop_assert!(start <= at && at < next, "{kind} {zone} {at}: {start}..{next}");
                proptest::prop_assert_eq!(buckets.start(kind, start), start);
            }
        }
    }

    #[test]
    fn names_round_trip() {
        for kind in BucketType::ALL {
            assert_eq!(kind.as_str().parse::<BucketType>(), Ok(kind));
        }
        assert!("fortnight".parse::<BucketType>().is_err());
    }
}
