//! The k-core filter of paper §5.1.1: users and items with fewer than 20 interactions are
//! dropped, repeatedly, until every remaining user and item has at least 20.
//!
//! An interaction is any event, click or exposure (for ML-1M: any rating, as in the paper's
//! Table 1, which counts all 1,000,209 ratings).

use serde::Serialize;

use super::{EventKind, EventLog};

/// The paper's minimum number of interactions per user and per item.
pub const MIN_INTERACTIONS: usize = 20;

/// Sizes of a log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LogCounts {
    pub users: usize,
    pub items: usize,
    pub clicks: usize,
    pub exposures: usize,
}

impl LogCounts {
    /// Counts the users and items that occur in the log's events and its clicks and exposures.
    pub fn of(log: &EventLog) -> Self {
        let mut users = vec![false; log.users.len()];
        let mut items = vec![false; log.items.len()];
        let mut clicks = 0;
        for e in &log.events {
            users[e.user as usize] = true;
            items[e.item as usize] = true;
            clicks += usize::from(e.kind == EventKind::Click);
        }
        LogCounts {
            users: users.iter().filter(|&&u| u).count(),
            items: items.iter().filter(|&&i| i).count(),
            clicks,
            exposures: log.events.len() - clicks,
        }
    }
}

/// What the filter did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct FilterReport {
    pub before: LogCounts,
    pub after: LogCounts,
    /// Passes over the log until nothing more was dropped (the last pass drops nothing).
    pub passes: usize,
    pub min_interactions: usize,
}

/// Drops users and items with fewer than `min` interactions until stable, then renumbers the
/// survivors densely (keeping the raw-id mappings) and keeps the events in file order.
pub fn k_core(log: &mut EventLog, min: usize) -> FilterReport {
    let before = LogCounts::of(log);
    let mut passes = 0;
    loop {
        passes += 1;
        let mut per_user = vec![0usize; log.users.len()];
        let mut per_item = vec![0usize; log.items.len()];
        for e in &log.events {
            per_user[e.user as usize] += 1;
            per_item[e.item as usize] += 1;
        }
        let len = log.events.len();
        log.events
            .retain(|e| per_user[e.user as usize] >= min && per_item[e.item as usize] >= min);
        if log.events.len() == len {
            break;
        }
    }
    renumber(log);
    FilterReport {
        before,
        after: LogCounts::of(log),
        passes,
        min_interactions: min,
    }
}

/// Renumbers users and items densely so that only those with events keep an index.
fn renumber(log: &mut EventLog) {
    let mut has_user = vec![false; log.users.len()];
    let mut has_item = vec![false; log.items.len()];
    for e in &log.events {
        has_user[e.user as usize] = true;
        has_item[e.item as usize] = true;
    }
    let users = log.users.retain(|u| has_user[u as usize]);
    let items = log.items.retain(|i| has_item[i as usize]);
    for e in &mut log.events {
        // Every event's user and item were marked present above, so the remap is defined.
        e.user = users[e.user as usize].unwrap_or(u32::MAX);
        e.item = items[e.item as usize].unwrap_or(u32::MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EventKind::{Click, Exposure};

    fn log_from(rows: &[(&str, &str)]) -> EventLog {
        let mut log = EventLog::default();
        for (t, (u, i)) in rows.iter().enumerate() {
            let kind = if t % 3 == 0 { Exposure } else { Click };
            log.push_raw(u, i, t as i64, kind);
        }
        log
    }

    #[test]
    fn k_core_repeats_until_stable() {
        // Users a, b interact with items x, y twice each (2-core holds for them); user c has
        // two interactions, one with item z that only c touches. With min = 2, pass 1 drops z
        // (1 interaction), which leaves c with 1 interaction, dropped in pass 2.
        let mut log = log_from(&[
            ("a", "x"),
            ("a", "y"),
            ("b", "x"),
            ("b", "y"),
            ("c", "x"),
            ("c", "z"),
        ]);
        let report = k_core(&mut log, 2);
        assert_eq!(report.before.users, 3);
        assert_eq!(report.before.items, 3);
        assert_eq!(report.after.users, 2);
        assert_eq!(report.after.items, 2);
        assert_eq!(
            report.passes, 3,
            "two passes drop something, the third confirms"
        );
        assert_eq!(log.events.len(), 4);
        assert_eq!(log.users.len(), 2);
        assert_eq!(log.items.len(), 2);
        assert!(log.users.get("c").is_none());
        assert!(log.items.get("z").is_none());
    }

    #[test]
    fn k_core_keeps_file_order_and_raw_ids() {
        let mut log = log_from(&[("b", "y"), ("a", "x"), ("b", "x"), ("a", "y")]);
        let ts: Vec<i64> = log.events.iter().map(|e| e.ts).collect();
        k_core(&mut log, 2);
        assert_eq!(log.events.iter().map(|e| e.ts).collect::<Vec<_>>(), ts);
        let first = log.events[0];
        assert_eq!(log.users.raw(first.user), Some("b"));
        assert_eq!(log.items.raw(first.item), Some("y"));
    }

    #[test]
    fn k_core_counts_exposures_as_interactions() {
        let mut log = EventLog::default();
        for t in 0..4 {
            log.push_raw("u", "i", t, if t == 0 { Click } else { Exposure });
        }
        let report = k_core(&mut log, 4);
        assert_eq!(report.after.users, 1);
        assert_eq!(report.after.clicks, 1);
        assert_eq!(report.after.exposures, 3);
    }
}
