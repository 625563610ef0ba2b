//! slowfast-data: the cloud side's data layer, below training and serving (docs/architecture.md §4).
//!
//! The event log — `user, item, timestamp, kind` with kind ∈ {click, exposure} — its readers, the
//! 20-core filter and the per-user time split; the synthetic world ([`synth`]); the evaluation
//! protocol ([`protocol`]: which history a model sees, the sampled cases, the metrics); and the
//! thread budget training and evaluation share ([`parallel`]). Nothing here trains a model.

pub mod csv;
pub mod error;
pub mod filter;
pub mod movielens;
pub mod output;
pub mod parallel;
pub mod parquet;
pub mod protocol;
mod pylit;
pub mod split;
pub mod steam;
pub mod synth;

pub use error::{DataError, FileError, JsonError, Result};

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use serde::{Deserialize, Serialize};

/// What the user did with an item.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    /// The user clicked (a positive).
    Click,
    /// The item was shown and not clicked (a real-time negative signal).
    Exposure,
}

impl EventKind {
    /// The kind as the CSV and Parquet formats write it.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Click => "click",
            EventKind::Exposure => "exposure",
        }
    }
}

/// A `kind` field of the CSV and Parquet formats: `click` or `exposure`, case-insensitive.
pub(crate) fn parse_kind(kind: &str) -> std::result::Result<EventKind, String> {
    if kind.eq_ignore_ascii_case("click") {
        Ok(EventKind::Click)
    } else if kind.eq_ignore_ascii_case("exposure") {
        Ok(EventKind::Exposure)
    } else {
        Err(format!("kind '{kind}' is neither 'click' nor 'exposure'"))
    }
}

/// One interaction with dense user and item indices.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Event {
    pub user: u32,
    pub item: u32,
    /// Seconds since the Unix epoch (or any monotone clock of the data set).
    pub ts: i64,
    pub kind: EventKind,
}

// What a loaded data set costs per event: the split holds each event once (`split::Events`).
const _: () = assert!(std::mem::size_of::<Event>() == 24);

/// A bijection between the raw ids of a file and dense indices `0..len`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct IdMap {
    raw: Vec<String>,
    #[serde(skip)]
    index: HashMap<String, u32>,
}

impl IdMap {
    /// The dense index of `raw`, assigning the next one on first sight.
    pub fn intern(&mut self, raw: &str) -> u32 {
        if let Some(&i) = self.index.get(raw) {
            return i;
        }
        let i = self.raw.len() as u32;
        self.raw.push(raw.to_owned());
        self.index.insert(raw.to_owned(), i);
        i
    }

    /// The dense index of `raw`, if it was seen.
    pub fn get(&self, raw: &str) -> Option<u32> {
        self.index.get(raw).copied()
    }

    /// The raw id behind a dense index.
    pub fn raw(&self, index: u32) -> Option<&str> {
        self.raw.get(index as usize).map(String::as_str)
    }

    /// The number of distinct ids.
    pub fn len(&self) -> usize {
        self.raw.len()
    }

    /// Whether no id was seen.
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// Keeps only the indices for which `keep` is true and renumbers them densely, in order.
    /// Returns the old → new mapping (`None` for dropped indices).
    pub fn retain(&mut self, keep: impl Fn(u32) -> bool) -> Vec<Option<u32>> {
        let mut remap = Vec::with_capacity(self.raw.len());
        let mut raw = Vec::new();
        for (old, id) in std::mem::take(&mut self.raw).into_iter().enumerate() {
            if keep(old as u32) {
                remap.push(Some(raw.len() as u32));
                raw.push(id);
            } else {
                remap.push(None);
            }
        }
        self.index = raw
            .iter()
            .enumerate()
            .map(|(i, r)| (r.clone(), i as u32))
            .collect();
        self.raw = raw;
        remap
    }
}

/// An event log in file order, with the id mappings kept.
#[derive(Clone, Debug, Default)]
pub struct EventLog {
    /// Events in the order the file gave them (ties in time keep this order).
    pub events: Vec<Event>,
    pub users: IdMap,
    pub items: IdMap,
    /// Malformed records skipped under `--lenient`.
    pub skipped: u64,
}

impl EventLog {
    /// Appends an event given by raw ids, interning them.
    pub fn push_raw(&mut self, user: &str, item: &str, ts: i64, kind: EventKind) {
        let user = self.users.intern(user);
        let item = self.items.intern(item);
        self.events.push(Event {
            user,
            item,
            ts,
            kind,
        });
    }

    /// The raw user and item ids of an event of this log.
    pub fn raw_ids(&self, e: &Event) -> Result<(&str, &str)> {
        let unknown = |what: &str, index: u32| {
            DataError::Unusable(format!(
                "event refers to {what} index {index}, which has no raw id"
            ))
        };
        let user = self
            .users
            .raw(e.user)
            .ok_or_else(|| unknown("user", e.user))?;
        let item = self
            .items
            .raw(e.item)
            .ok_or_else(|| unknown("item", e.item))?;
        Ok((user, item))
    }

    /// Number of click and exposure events.
    pub fn counts(&self) -> (usize, usize) {
        let clicks = self
            .events
            .iter()
            .filter(|e| e.kind == EventKind::Click)
            .count();
        (clicks, self.events.len() - clicks)
    }
}

/// The input formats `slowfast` reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// `user,item,timestamp,kind` with a header; `.gz` accepted.
    Csv,
    /// MovieLens-1M `ratings.dat`: rating ≥ 4 is a click, ≤ 3 an exposure.
    #[value(name = "ml-1m")]
    #[serde(rename = "ml-1m")]
    Ml1m,
    /// The UCSD Steam reviews file of SASRec: every review is a click; no exposures.
    Steam,
    /// Apache Parquet with the CSV format's columns (string or integer ids).
    Parquet,
}

impl Format {
    /// Guesses the format from a file name: `*.dat` → ML-1M, `*.parquet` → Parquet, `steam*` →
    /// Steam, else CSV.
    pub fn guess(path: &Path) -> Format {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_ascii_lowercase();
        if name.ends_with(".dat") {
            Format::Ml1m
        } else if name.ends_with(".parquet") {
            Format::Parquet
        } else if name.contains("steam") {
            Format::Steam
        } else {
            Format::Csv
        }
    }
}

/// How readers treat malformed records.
#[derive(Clone, Copy, Debug, Default)]
pub struct ReadOptions {
    /// Skip and count malformed records instead of failing on the first one.
    pub lenient: bool,
}

/// Opens a file for line reading, transparently un-gzipping it when it starts with the gzip magic.
pub fn open_text(path: &Path) -> Result<Box<dyn BufRead>> {
    let mut file = File::open(path).map_err(|e| FileError::new(path, e))?;
    let mut magic = [0u8; 2];
    let n = file.read(&mut magic).map_err(|e| FileError::new(path, e))?;
    let file = File::open(path).map_err(|e| FileError::new(path, e))?;
    if n == 2 && magic == [0x1f, 0x8b] {
        Ok(Box::new(BufReader::new(flate2::read::MultiGzDecoder::new(
            file,
        ))))
    } else {
        Ok(Box::new(BufReader::new(file)))
    }
}

/// Reads an event log in the given format.
pub fn read(path: &Path, format: Format, opts: ReadOptions) -> Result<EventLog> {
    let source = path.display().to_string();
    match format {
        Format::Csv => csv::read(open_text(path)?, &source, opts),
        Format::Ml1m => movielens::read(open_text(path)?, &source, opts),
        Format::Steam => steam::read(open_text(path)?, &source, opts),
        Format::Parquet => parquet::read(path, opts),
    }
}

/// Writes `log` with its raw ids in the format its file name asks for (see [`EventWriter`]).
pub fn write(log: &EventLog, path: &Path) -> Result<()> {
    let mut writer = EventWriter::create(path)?;
    for e in &log.events {
        let (user, item) = log.raw_ids(e)?;
        writer.push(user, item, e.ts, e.kind)?;
    }
    writer.finish()
}

/// An event log written one event at a time in the format its file name asks for: Parquet for
/// `*.parquet`, else CSV (gzip-compressed for `*.gz`). [`EventWriter::finish`] completes it.
pub enum EventWriter {
    Csv(Box<csv::CsvWriter>),
    Parquet(Box<parquet::ParquetWriter>),
}

impl EventWriter {
    /// Creates (or truncates) `path`.
    pub fn create(path: &Path) -> Result<EventWriter> {
        Ok(if Format::guess(path) == Format::Parquet {
            EventWriter::Parquet(Box::new(parquet::ParquetWriter::create(path)?))
        } else {
            EventWriter::Csv(Box::new(csv::CsvWriter::create(path)?))
        })
    }

    /// Appends one event given by its raw ids.
    pub fn push(&mut self, user: &str, item: &str, ts: i64, kind: EventKind) -> Result<()> {
        match self {
            EventWriter::Csv(w) => w.push(user, item, ts, kind),
            EventWriter::Parquet(w) => w.push(user, item, ts, kind),
        }
    }

    /// Completes the file.
    pub fn finish(self) -> Result<()> {
        match self {
            EventWriter::Csv(w) => w.finish(),
            EventWriter::Parquet(w) => w.finish(),
        }
    }
}

/// Reads a line-oriented file: `push` parses one line (without its `\n`) into the log or says
/// why it is malformed; invalid UTF-8 is malformed too, I/O errors stop the read.
pub(crate) fn read_lines(
    input: Box<dyn BufRead>,
    source: &str,
    opts: ReadOptions,
    mut push: impl FnMut(&mut EventLog, &str) -> std::result::Result<(), String>,
) -> Result<EventLog> {
    let mut log = EventLog::default();
    for (i, bytes) in input.split(b'\n').enumerate() {
        let bytes = bytes.map_err(|e| FileError::new(source, e))?;
        let pushed = std::str::from_utf8(&bytes)
            .map_err(|_| "line is not valid UTF-8".to_owned())
            .and_then(|line| push(&mut log, line));
        if let Err(reason) = pushed {
            malformed(&mut log, opts, source, i as u64 + 1, reason)?;
        }
    }
    Ok(log)
}

/// Records a malformed record: an error when strict, a skip when lenient.
pub(crate) fn malformed(
    log: &mut EventLog,
    opts: ReadOptions,
    file: &str,
    line: u64,
    reason: impl Into<String>,
) -> Result<()> {
    if opts.lenient {
        log.skipped += 1;
        Ok(())
    } else {
        Err(DataError::Parse {
            file: file.to_owned(),
            line,
            reason: reason.into(),
        })
    }
}

/// A data set ready for training and evaluation: read, 20-core filtered, split.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// A display name (`ML-1M (users 1–2998)`, `synthetic`, or the file name).
    pub name: String,
    /// The filtered log's id mappings and skip count; its events are the split's (moved there,
    /// so each is held once), and `log.events` is empty.
    pub log: EventLog,
    pub filter: filter::FilterReport,
    pub split: split::Split,
}

impl Dataset {
    /// Filters and splits a log (paper §5.1.1).
    pub fn from_log(name: impl Into<String>, mut log: EventLog) -> Result<Dataset> {
        let filter = filter::k_core(&mut log, filter::MIN_INTERACTIONS);
        let events = std::mem::take(&mut log.events);
        let split = split::Split::from_events(events, log.users.len(), log.items.len());
        if split.timelines.is_empty() {
            return Err(DataError::Unusable(format!(
                "no user has {} clicks after the {}-core filter",
                split::MIN_CLICKS,
                filter::MIN_INTERACTIONS
            )));
        }
        Ok(Dataset {
            name: name.into(),
            log,
            filter,
            split,
        })
    }

    /// Reads, filters and splits a file.
    pub fn load(path: &Path, format: Format, opts: ReadOptions) -> Result<Dataset> {
        let log = read(path, format, opts)?;
        Dataset::from_log(display_name(path, format), log)
    }
}

/// The name a data set read from `path` is reported under.
pub fn display_name(path: &Path, format: Format) -> String {
    match format {
        Format::Ml1m => "ML-1M".to_owned(),
        Format::Steam => "Steam".to_owned(),
        Format::Csv | Format::Parquet => path.file_name().and_then(|n| n.to_str()).map_or_else(
            || path.display().to_string(),
            |n| {
                n.trim_end_matches(".gz")
                    .trim_end_matches(".csv")
                    .trim_end_matches(".parquet")
                    .to_owned()
            },
        ),
    }
}
