//! MovieLens-1M `ratings.dat`: `UserID::MovieID::Rating::Timestamp`, one rating per line.
//!
//! ML-1M has no impressions, so the rating stands in for them (docs/architecture.md §4): a rating ≥ 4 is a
//! click, and a rating ≤ 3 is an exposure — an item the user was shown and did not like, the
//! closest thing to a real-time negative the data holds.

use std::io::BufRead;

use super::{read_lines, EventKind, EventLog, ReadOptions};
use crate::error::Result;

/// The lowest rating read as a click.
const CLICK_RATING: u8 = 4;

/// Reads `ratings.dat`; blank lines are skipped silently, malformed ones per `opts`.
pub fn read(input: Box<dyn BufRead>, source: &str, opts: ReadOptions) -> Result<EventLog> {
    read_lines(input, source, opts, |log, line| {
        if let Some(r) = parse_line(line)? {
            log.push_raw(r.user, r.item, r.ts, r.kind);
        }
        Ok(())
    })
}

/// One parsed line, borrowing its ids.
struct Rating<'a> {
    user: &'a str,
    item: &'a str,
    ts: i64,
    kind: EventKind,
}

/// Parses one line; `None` for a blank one.
fn parse_line(line: &str) -> Result<Option<Rating<'_>>, String> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    if line.trim().is_empty() {
        return Ok(None);
    }
    let fields: Vec<&str> = line.split("::").collect();
    let [user, item, rating, ts] = fields[..] else {
        return Err(format!(
            "expected 4 fields separated by '::', got {}",
            fields.len()
        ));
    };
    integer::<u32>("UserID", user)?;
    integer::<u32>("MovieID", item)?;
    let rating = integer::<u8>("Rating", rating)?;
    if !(1..=5).contains(&rating) {
        return Err(format!("Rating {rating} is outside 1..=5"));
    }
    let kind = if rating >= CLICK_RATING {
        EventKind::Click
    } else {
        EventKind::Exposure
    };
    let ts = integer::<i64>("Timestamp", ts)?;
    Ok(Some(Rating {
        user,
        item,
        ts,
        kind,
    }))
}

/// Parses a field as an integer, naming it in the error.
fn integer<T: std::str::FromStr>(name: &str, field: &str) -> Result<T, String> {
    field
        .parse()
        .map_err(|_| format!("{name} '{field}' is not an integer in range"))
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;
    use std::path::Path;

    use super::*;
    use crate::Event;

    fn read_str(text: &str, lenient: bool) -> Result<EventLog> {
        read(
            Box::new(Cursor::new(text.to_owned())),
            "ratings.dat",
            ReadOptions { lenient },
        )
    }

    #[test]
    fn reads_ratings_as_clicks_and_exposures() {
        let log = read_str(
            "1::1193::5::978300760\n1::661::3::978302109\r\n\n2::1193::4::978300000\n",
            false,
        )
        .unwrap();
        let kinds: Vec<EventKind> = log.events.iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            [EventKind::Click, EventKind::Exposure, EventKind::Click]
        );
        assert_eq!(
            log.events[1],
            Event {
                user: 0,
                item: 1,
                ts: 978302109,
                kind: EventKind::Exposure
            }
        );
        assert_eq!(log.events[2].item, 0);
        assert_eq!(log.users.raw(1), Some("2"));
        assert_eq!(log.items.raw(1), Some("661"));
        assert_eq!(log.skipped, 0);
    }

    #[test]
    fn every_rating_maps_to_its_kind() {
        let text: String = (1..=5).map(|r| format!("1::{r}::{r}::0\n")).collect();
        let log = read_str(&text, false).unwrap();
        assert_eq!(log.counts(), (2, 3));
    }

    const MALFORMED: [(&str, &str); 8] = [
        ("1::2::3", "expected 4 fields separated by '::', got 3"),
        (
            "1::2::3::4::5",
            "expected 4 fields separated by '::', got 5",
        ),
        ("1,2,3,4", "expected 4 fields separated by '::', got 1"),
        ("x::2::3::4", "UserID 'x' is not an integer in range"),
        ("1::2.5::3::4", "MovieID '2.5' is not an integer in range"),
        ("1::2::4.5::4", "Rating '4.5' is not an integer in range"),
        ("1::2::6::4", "Rating 6 is outside 1..=5"),
        (
            "1::2::3::soon",
            "Timestamp 'soon' is not an integer in range",
        ),
    ];

    #[test]
    fn strict_errors_name_file_line_and_reason() {
        for (bad, reason) in MALFORMED
            .iter()
            .chain(&[("1::2::0::4", "Rating 0 is outside 1..=5")])
        {
            let err = read_str(&format!("1::1::5::1\n\n{bad}\n1::1::5::2\n"), false).unwrap_err();
            assert_eq!(err.to_string(), format!("ratings.dat:3: {reason}"));
        }
        let err = read(
            Box::new(Cursor::new(b"1::1::5::1\n1::\xff::5::1\n".to_vec())),
            "r.dat",
            ReadOptions::default(),
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "r.dat:2: line is not valid UTF-8");
    }

    #[test]
    fn lenient_skips_and_counts_malformed_lines() {
        let mut text = String::from("1::1::5::1\n");
        for (bad, _) in MALFORMED {
            text.push_str(bad);
            text.push('\n');
        }
        text.push_str("2::1::2::3\n");
        let log = read_str(&text, true).unwrap();
        assert_eq!(log.skipped, MALFORMED.len() as u64);
        assert_eq!(log.events.len(), 2);
        assert_eq!(log.counts(), (1, 1));
    }

    /// The real file, users 1–2998 of MovieLens-1M (not part of this repository): run with
    /// `SLOWFAST_ML1M=path/to/ratings.dat cargo test -- --ignored ml_1m`.
    #[test]
    #[ignore = "needs MovieLens-1M users 1-2998: set SLOWFAST_ML1M to its ratings.dat"]
    fn reads_the_real_ml_1m_file() {
        let path = std::env::var_os("SLOWFAST_ML1M").expect("SLOWFAST_ML1M names ratings.dat");
        let path = Path::new(&path);
        let log = crate::read(path, crate::Format::Ml1m, ReadOptions::default()).unwrap();
        assert_eq!(log.events.len(), 487_515);
        assert_eq!(log.counts().0, 279_086);
        assert_eq!(log.users.len(), 2_998);
        assert_eq!(log.items.len(), 3_615);
    }
}
