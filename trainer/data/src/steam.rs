//! The UCSD Steam reviews file used by SASRec (`steam_reviews.json.gz`): despite the name, one
//! Python-literal dict per line, read with the private `pylit` parser.
//!
//! The user is `username` and the item `product_id`, as in SASRec's preprocessing; a review
//! without `username` is malformed — we do not fall back to `user_id`, which would mix two id
//! spaces. The time is `date` (`YYYY-MM-DD`) as seconds since the epoch at 00:00 UTC; many reviews
//! share a date, and such ties keep file order.
//!
//! Every review is a click. The data has no impressions, so there are no exposures: on Steam the
//! fast model's exposure window and the negative memory stay empty. We do not fabricate exposures.

use std::io::BufRead;

use chrono::{NaiveDate, NaiveTime};

use super::pylit::{self, PyValue};
use super::{read_lines, EventKind, EventLog, ReadOptions};
use crate::error::Result;

/// Reads the reviews file; blank lines are skipped silently, malformed ones per `opts`.
pub fn read(input: Box<dyn BufRead>, source: &str, opts: ReadOptions) -> Result<EventLog> {
    read_lines(input, source, opts, push_review)
}

/// Parses one line and appends its click; a blank line appends nothing.
fn push_review(log: &mut EventLog, line: &str) -> Result<(), String> {
    if line.trim().is_empty() {
        return Ok(());
    }
    let review = pylit::parse(line).map_err(|e| format!("not a Python literal: {e}"))?;
    if !matches!(review, PyValue::Dict(_)) {
        return Err(format!("expected a dict, got {}", review.type_name()));
    }
    let user = string_key(&review, "username")?;
    let item = string_key(&review, "product_id")?;
    let date = string_key(&review, "date")?;
    let date = NaiveDate::parse_from_str(date, "%Y-%m-%d")
        .map_err(|e| format!("date '{date}' is not YYYY-MM-DD: {e}"))?;
    let ts = date.and_time(NaiveTime::MIN).and_utc().timestamp();
    log.push_raw(user, item, ts, EventKind::Click);
    Ok(())
}

/// The string under `key`, or why there is none.
fn string_key<'a>(review: &'a PyValue, key: &str) -> Result<&'a str, String> {
    match review.get(key) {
        Some(PyValue::Str(s)) => Ok(s),
        Some(other) => Err(format!(
            "'{key}' should be a str, got {}",
            other.type_name()
        )),
        None => Err(format!("missing key '{key}'")),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;
    use crate::Event;

    const REVIEW: &str = "{'username': 'Chaos Syren', 'hours': 0.1, 'products': 41, 'product_id': '725280', \
        'page_order': 0, 'date': '2017-12-17', 'text': 'This would not be acceptable as an entertainment \
        even back in the day...', 'early_access': False, 'page': 1, 'compensation': 'Product received \
        for free', 'found_funny': 1, 'user_id': '76561198007483075'}";

    fn read_str(text: &str, lenient: bool) -> Result<EventLog> {
        read(
            Box::new(Cursor::new(text.to_owned())),
            "steam.json",
            ReadOptions { lenient },
        )
    }

    #[test]
    fn every_review_is_a_click_at_midnight_utc() {
        let second = "{'username': 'Ünï \\'q\\'', 'product_id': '10', 'date': '1970-01-02'}";
        let log = read_str(&format!("{REVIEW}\n\n{second}\r\n{REVIEW}\n"), false).unwrap();
        assert_eq!(
            log.events,
            [
                Event {
                    user: 0,
                    item: 0,
                    ts: 1_513_468_800,
                    kind: EventKind::Click
                },
                Event {
                    user: 1,
                    item: 1,
                    ts: 86_400,
                    kind: EventKind::Click
                },
                Event {
                    user: 0,
                    item: 0,
                    ts: 1_513_468_800,
                    kind: EventKind::Click
                },
            ]
        );
        assert_eq!(log.users.raw(0), Some("Chaos Syren"));
        assert_eq!(log.users.raw(1), Some("Ünï 'q'"));
        assert_eq!(log.items.raw(0), Some("725280"));
        assert_eq!(log.counts(), (3, 0));
    }

    const MALFORMED: [(&str, &str); 8] = [
        (
            "{'username': 'a', 'date': '2017-12-17'}",
            "missing key 'product_id'",
        ),
        (
            "{'user_id': '7', 'product_id': '1', 'date': '2017-12-17'}",
            "missing key 'username'",
        ),
        ("{'username': 'a', 'product_id': '1'}", "missing key 'date'"),
        (
            "{'username': 'a', 'product_id': 1, 'date': '2017-12-17'}",
            "'product_id' should be a str, got int",
        ),
        (
            "{'username': 'a', 'product_id': '1', 'date': '17/12/2017'}",
            "date '17/12/2017' is not YYYY-MM-DD: input contains invalid characters",
        ),
        (
            "{'username': 'a', 'product_id': '1', 'date': '2017-02-30'}",
            "date '2017-02-30' is not YYYY-MM-DD: input is out of range",
        ),
        ("['a', '1', '2017-12-17']", "expected a dict, got list"),
        (
            "{'username': 'a', 'product_id': '1",
            "not a Python literal: unterminated string starting at column 33",
        ),
    ];

    #[test]
    fn strict_errors_name_file_line_and_reason() {
        for (bad, reason) in MALFORMED {
            let err = read_str(&format!("{REVIEW}\n{bad}\n{REVIEW}\n"), false).unwrap_err();
            assert_eq!(err.to_string(), format!("steam.json:2: {reason}"), "{bad}");
        }
        let bytes = [REVIEW.as_bytes(), b"\n{'username': '\xff'}\n"].concat();
        let err = read(
            Box::new(Cursor::new(bytes)),
            "s.json",
            ReadOptions::default(),
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "s.json:2: line is not valid UTF-8");
    }

    #[test]
    fn lenient_skips_and_counts_malformed_lines() {
        let mut text = format!("{REVIEW}\n");
        for (bad, _) in MALFORMED {
            text.push_str(bad);
            text.push('\n');
        }
        text.push_str(REVIEW);
        let log = read_str(&text, true).unwrap();
        assert_eq!(log.skipped, MALFORMED.len() as u64);
        assert_eq!(log.events.len(), 2);
    }
}
