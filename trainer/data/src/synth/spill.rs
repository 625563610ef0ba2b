//! Sorted runs of events on disk and their merge: how [`generate_streaming`](super::generate_streaming)
//! writes a log larger than memory in the order of one global sort by time, then user.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{BufReader, BufWriter, ErrorKind, Read, Write};
use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::{Event, EventKind, FileError};

/// Bytes of one event in a run: user, item (u32), timestamp (i64), kind (u8), little-endian.
const RECORD: usize = 17;

/// A temporary directory of sorted runs, removed when dropped.
pub(super) struct Spill {
    dir: tempfile::TempDir,
    runs: Vec<PathBuf>,
}

impl Spill {
    pub(super) fn new() -> Result<Spill> {
        let dir = tempfile::Builder::new()
            .prefix("slowfast-synth-")
            .tempdir()
            .map_err(|e| FileError::new(std::env::temp_dir(), e))?;
        Ok(Spill {
            dir,
            runs: Vec::new(),
        })
    }

    /// Writes `events`, sorted by (time, user), as the next run.
    pub(super) fn write_run(&mut self, events: &[Event]) -> Result<()> {
        let path = self.dir.path().join(format!("run-{}.bin", self.runs.len()));
        let io = |e| FileError::new(&path, e);
        let mut out = BufWriter::new(File::create(&path).map_err(io)?);
        for e in events {
            out.write_all(&encode(e)).map_err(io)?;
        }
        out.flush().map_err(io)?;
        self.runs.push(path);
        Ok(())
    }

    /// Hands every event of every run to `push`, by (time, user); within a run in its order.
    pub(super) fn merge(self, mut push: impl FnMut(&Event) -> Result<()>) -> Result<()> {
        let mut readers = Vec::with_capacity(self.runs.len());
        // Each run's next event, and a heap of (time, user, run) over them: unique per run
        // head, since no two runs share a user.
        let mut heads = Vec::with_capacity(self.runs.len());
        let mut heap = BinaryHeap::new();
        for (run, path) in self.runs.iter().enumerate() {
            let file = File::open(path).map_err(|e| FileError::new(path, e))?;
            let mut reader = BufReader::new(file);
            let head = next(&mut reader, path)?;
            if let Some(e) = head {
                heap.push(Reverse((e.ts, e.user, run)));
            }
            heads.push(head);
            readers.push(reader);
        }
        while let Some(Reverse((_, _, run))) = heap.pop() {
            if let Some(e) = heads[run] {
                push(&e)?;
            }
            heads[run] = next(&mut readers[run], &self.runs[run])?;
            if let Some(e) = heads[run] {
                heap.push(Reverse((e.ts, e.user, run)));
            }
        }
        Ok(())
    }
}

fn encode(e: &Event) -> [u8; RECORD] {
    let mut b = [0u8; RECORD];
    b[0..4].copy_from_slice(&e.user.to_le_bytes());
    b[4..8].copy_from_slice(&e.item.to_le_bytes());
    b[8..16].copy_from_slice(&e.ts.to_le_bytes());
    b[16] = match e.kind {
        EventKind::Click => 0,
        EventKind::Exposure => 1,
    };
    b
}

/// The next event of a run, `None` at its end.
fn next(reader: &mut impl Read, path: &Path) -> Result<Option<Event>> {
    let mut b = [0u8; RECORD];
    match reader.read_exact(&mut b) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(FileError::new(path, e).into()),
    }
    let word = |r: std::ops::Range<usize>| u32::from_le_bytes(b[r].try_into().expect("4 bytes"));
    Ok(Some(Event {
        user: word(0..4),
        item: word(4..8),
        ts: i64::from_le_bytes(b[8..16].try_into().expect("8 bytes")),
        kind: if b[16] == 0 {
            EventKind::Click
        } else {
            EventKind::Exposure
        },
    }))
}

#[cfg(test)]
mod tests {
    use crate::synth::{generate, generate_streaming, SynthConfig};
    use crate::DataError;

    #[test]
    fn a_log_streamed_in_blocks_is_generates_log_event_for_event() {
        let cfg = SynthConfig {
            users: 40,
            items: 300,
            ..SynthConfig::default()
        };
        let log = generate(&cfg).unwrap();
        for block in [1, 7, 40, 1000] {
            let mut events = Vec::new();
            generate_streaming(&cfg, block, |e| {
                events.push(*e);
                Ok(())
            })
            .unwrap();
            assert_eq!(events, log.events, "blocks of {block} users");
        }
    }

    #[test]
    fn an_error_of_the_receiver_stops_the_stream_and_is_returned() {
        let cfg = SynthConfig {
            users: 20,
            items: 300,
            ..SynthConfig::default()
        };
        let mut seen = 0;
        let err = generate_streaming(&cfg, 6, |_| {
            seen += 1;
            if seen == 100 {
                return Err(DataError::Unusable("full".into()));
            }
            Ok(())
        })
        .unwrap_err();
        assert_eq!(seen, 100);
        assert!(matches!(err, DataError::Unusable(m) if m == "full"));
    }
}
