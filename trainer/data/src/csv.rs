//! The native CSV format: a required header naming `user`, `item`, `timestamp` and `kind`
//! (any order, case-insensitive, extra columns ignored), then one event per record.
//! `kind` is `click` or `exposure` (case-insensitive); `timestamp` is an integer.

use std::fs::File;
use std::io::{BufRead, BufWriter, Write};
use std::path::{Path, PathBuf};

use csv::{ErrorKind, ReaderBuilder, StringRecord, Trim, Writer};
use flate2::write::GzEncoder;
use flate2::Compression;

use super::{malformed, EventKind, EventLog, ReadOptions};
use crate::error::{DataError, Result};
use crate::FileError;

/// The required columns, in the order [`CsvWriter`] puts them.
const COLUMNS: [&str; 4] = ["user", "item", "timestamp", "kind"];

/// Reads the CSV format; a bad header is always an error, bad records follow `opts`.
pub fn read(input: Box<dyn BufRead>, source: &str, opts: ReadOptions) -> Result<EventLog> {
    let mut reader = ReaderBuilder::new()
        .has_headers(true)
        .trim(Trim::All)
        .flexible(false)
        .from_reader(input);
    let header = reader
        .headers()
        .map_err(|e| match record_error(source, e) {
            Ok((_, reason)) => header_error(source, reason),
            Err(fatal) => fatal,
        })?;
    let columns = column_indices(header).map_err(|reason| header_error(source, reason))?;
    let mut log = EventLog::default();
    let mut record = StringRecord::new();
    loop {
        let (line, parsed) = match reader.read_record(&mut record) {
            Ok(false) => return Ok(log),
            Ok(true) => (
                record.position().map_or(0, |p| p.line()),
                parse_record(&record, columns),
            ),
            Err(e) => {
                let (line, reason) = record_error(source, e)?;
                (line, Err(reason))
            }
        };
        match parsed {
            Ok((user, item, ts, kind)) => log.push_raw(user, item, ts, kind),
            Err(reason) => malformed(&mut log, opts, source, line, reason)?,
        }
    }
}

fn header_error(source: &str, reason: String) -> DataError {
    DataError::Parse {
        file: source.to_owned(),
        line: 1,
        reason,
    }
}

/// Finds the required columns in the header; errors name the first one missing or repeated.
fn column_indices(header: &StringRecord) -> Result<[usize; 4], String> {
    let mut indices = [0; 4];
    for (index, name) in indices.iter_mut().zip(COLUMNS) {
        let mut found = header
            .iter()
            .enumerate()
            .filter(|(_, h)| h.eq_ignore_ascii_case(name));
        *index = match (found.next(), found.next()) {
            (Some((i, _)), None) => i,
            (None, _) => {
                return Err(format!(
                    "header lacks column '{name}' (needs {})",
                    COLUMNS.join(",")
                ));
            }
            (Some(_), Some(_)) => return Err(format!("header repeats column '{name}'")),
        };
    }
    Ok(indices)
}

/// Turns a csv error on a record into its line and reason; I/O errors are fatal.
fn record_error(source: &str, e: csv::Error) -> Result<(u64, String)> {
    let line = e.position().map_or(0, |p| p.line());
    let reason = match e.kind() {
        ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => {
            format!("expected {expected_len} fields as in the header, got {len}")
        }
        ErrorKind::Utf8 { .. } => "record is not valid UTF-8".to_owned(),
        _ => return Err(FileError::new(source, e.into()).into()),
    };
    Ok((line, reason))
}

/// One parsed record, borrowing its ids.
type Record<'a> = (&'a str, &'a str, i64, EventKind);

fn parse_record(
    record: &StringRecord,
    [user, item, ts, kind]: [usize; 4],
) -> Result<Record<'_>, String> {
    let field = |i: usize, name: &str| match record.get(i) {
        Some(value) if !value.is_empty() => Ok(value),
        _ => Err(format!("empty {name}")),
    };
    let (user, item) = (field(user, "user")?, field(item, "item")?);
    let ts = field(ts, "timestamp")?;
    let ts = ts
        .parse()
        .map_err(|_| format!("timestamp '{ts}' is not an integer"))?;
    let kind = super::parse_kind(field(kind, "kind")?)?;
    Ok((user, item, ts, kind))
}

/// The file under a [`CsvWriter`]: plain or gzip-compressed.
enum Sink {
    Plain(BufWriter<File>),
    Gzip(GzEncoder<BufWriter<File>>),
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Sink::Plain(w) => w.write(buf),
            Sink::Gzip(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Sink::Plain(w) => w.flush(),
            Sink::Gzip(w) => w.flush(),
        }
    }
}

/// Writes the CSV format one event at a time (the header first); gzip-compressed when the
/// path ends in `.gz`. [`CsvWriter::finish`] completes the file.
pub struct CsvWriter {
    writer: Writer<Sink>,
    path: PathBuf,
}

impl CsvWriter {
    /// Creates (or truncates) `path` and writes the header.
    pub fn create(path: &Path) -> Result<CsvWriter> {
        let file = BufWriter::new(File::create(path).map_err(|e| FileError::new(path, e))?);
        let sink = if path.extension().is_some_and(|ext| ext == "gz") {
            Sink::Gzip(GzEncoder::new(file, Compression::default()))
        } else {
            Sink::Plain(file)
        };
        let mut writer = CsvWriter {
            writer: Writer::from_writer(sink),
            path: path.to_owned(),
        };
        writer
            .writer
            .write_record(COLUMNS)
            .map_err(|e| writer.error(e))?;
        Ok(writer)
    }

    /// Appends one event.
    pub fn push(&mut self, user: &str, item: &str, ts: i64, kind: EventKind) -> Result<()> {
        self.writer
            .write_record([user, item, &ts.to_string(), kind.as_str()])
            .map_err(|e| self.error(e))
    }

    /// Flushes the records and, for gzip, writes the stream's end.
    pub fn finish(self) -> Result<()> {
        let path = self.path;
        let io = |e| DataError::from(FileError::new(&path, e));
        match self.writer.into_inner().map_err(|e| io(e.into_error()))? {
            Sink::Plain(mut w) => w.flush().map_err(io),
            Sink::Gzip(w) => w.finish().and_then(|mut w| w.flush()).map_err(io),
        }
    }

    fn error(&self, e: csv::Error) -> DataError {
        FileError::new(&self.path, e.into()).into()
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;
    use crate::{Event, Format};

    fn read_str(text: &str, lenient: bool) -> Result<EventLog> {
        read(
            Box::new(Cursor::new(text.to_owned())),
            "events.csv",
            ReadOptions { lenient },
        )
    }

    #[test]
    fn reads_columns_by_name_in_any_order() {
        let text = "extra, Kind ,timestamp,item,USER\nx,click,10,i1,u1\n\ny, EXPOSURE ,11,i2,u2\nz,Click,-5,i1,u2\n";
        let log = read_str(text, false).unwrap();
        assert_eq!(
            log.events,
            [
                Event {
                    user: 0,
                    item: 0,
                    ts: 10,
                    kind: EventKind::Click
                },
                Event {
                    user: 1,
                    item: 1,
                    ts: 11,
                    kind: EventKind::Exposure
                },
                Event {
                    user: 1,
                    item: 0,
                    ts: -5,
                    kind: EventKind::Click
                },
            ]
        );
        assert_eq!(log.users.raw(1), Some("u2"));
        assert_eq!(log.items.raw(1), Some("i2"));
    }

    #[test]
    fn header_problems_are_errors_at_line_1_even_when_lenient() {
        let cases = [
            (
                "",
                "header lacks column 'user' (needs user,item,timestamp,kind)",
            ),
            (
                "u1,i1,1,click\n",
                "header lacks column 'user' (needs user,item,timestamp,kind)",
            ),
            (
                "user,item,kind\nu,i,click\n",
                "header lacks column 'timestamp' (needs user,item,timestamp,kind)",
            ),
            (
                "user,item,timestamp,kind,item\n",
                "header repeats column 'item'",
            ),
        ];
        for (text, reason) in cases {
            let err = read_str(text, true).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("events.csv:1: {reason}"),
                "{text:?}"
            );
        }
    }

    const MALFORMED: [(&str, &str); 7] = [
        ("u,i,1", "expected 4 fields as in the header, got 3"),
        (
            "u,i,1,click,more",
            "expected 4 fields as in the header, got 5",
        ),
        (" ,i,1,click", "empty user"),
        ("u,,1,click", "empty item"),
        ("u,i,1.5,click", "timestamp '1.5' is not an integer"),
        (
            "u,i,1,like",
            "kind 'like' is neither 'click' nor 'exposure'",
        ),
        ("u,i,1,1", "kind '1' is neither 'click' nor 'exposure'"),
    ];

    #[test]
    fn strict_errors_name_file_line_and_reason() {
        for (bad, reason) in MALFORMED {
            let err = read_str(
                &format!("user,item,timestamp,kind\nu,i,0,click\n{bad}\n"),
                false,
            )
            .unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("events.csv:3: {reason}"),
                "{bad:?}"
            );
        }
        let bytes = b"user,item,timestamp,kind\nu,\xff,1,click\n".to_vec();
        let err = read(
            Box::new(Cursor::new(bytes)),
            "e.csv",
            ReadOptions::default(),
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "e.csv:2: record is not valid UTF-8");
    }

    #[test]
    fn lenient_skips_and_counts_malformed_records() {
        let mut text = String::from("user,item,timestamp,kind\nu,i,0,click\n");
        for (bad, _) in MALFORMED {
            text.push_str(bad);
            text.push('\n');
        }
        let mut bytes = text.into_bytes();
        bytes.extend_from_slice(b"u,\xff,1,click\n\"u\",i,1,exposure\n");
        let lenient = ReadOptions { lenient: true };
        let log = read(Box::new(Cursor::new(bytes)), "events.csv", lenient).unwrap();
        assert_eq!(log.skipped, MALFORMED.len() as u64 + 1);
        assert_eq!(log.counts(), (1, 1));
        assert_eq!(log.users.len(), 1);
    }

    fn sample_log() -> EventLog {
        let mut log = EventLog::default();
        log.push_raw("alice", "item, with \"comma\"", 5, EventKind::Click);
        log.push_raw("bob", "42", -3, EventKind::Exposure);
        log.push_raw("alice", "42", 7, EventKind::Exposure);
        log
    }

    #[test]
    fn write_then_read_round_trips_plain_and_gzip() {
        let dir = tempfile::tempdir().unwrap();
        let original = sample_log();
        for name in ["events.csv", "events.csv.gz"] {
            let path = dir.path().join(name);
            crate::write(&original, &path).unwrap();
            let is_gzip = std::fs::read(&path).unwrap().starts_with(&[0x1f, 0x8b]);
            assert_eq!(is_gzip, name.ends_with(".gz"));
            let back = crate::read(&path, Format::Csv, ReadOptions::default()).unwrap();
            assert_eq!(back.events, original.events, "{name}");
            for i in 0..2 {
                assert_eq!(back.users.raw(i), original.users.raw(i));
                assert_eq!(back.items.raw(i), original.items.raw(i));
            }
            assert_eq!((back.users.len(), back.items.len()), (2, 2));
        }
    }

    #[test]
    fn reads_a_gzip_file_through_data_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.data");
        let mut gz = GzEncoder::new(File::create(&path).unwrap(), Compression::default());
        gz.write_all(b"user,item,timestamp,kind\nu1,i1,1,click\nu1,i2,2,exposure\n")
            .unwrap();
        gz.finish().unwrap();
        let log = crate::read(&path, Format::Csv, ReadOptions::default()).unwrap();
        assert_eq!(log.counts(), (1, 1));
    }

    #[test]
    fn write_rejects_an_event_without_raw_id() {
        let mut log = sample_log();
        log.events[0].user = 9;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.csv");
        let err = crate::write(&log, &path).unwrap_err();
        assert_eq!(
            err.to_string(),
            "data: event refers to user index 9, which has no raw id"
        );
    }
}
