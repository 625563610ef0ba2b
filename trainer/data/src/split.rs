//! The per-user time split of paper §5.1.1.
//!
//! For a user with `l` clicks in time order: the last 5 clicks form the **test phase**, clicks
//! `(l−9)…(l−5)` the **fast-training phase**, and the rest the **slow-training phase**.
//! Exposures follow the same cut-offs: an exposure belongs to the phase of the next click
//! boundary it precedes. Events are sorted by time with a stable sort, so ties in time keep
//! file order for the split itself (which phase an event falls in); what a moment may *see* is
//! strictly earlier in time ([`Timeline::before`]): events of the same second never see each
//! other. Users with fewer than [`MIN_CLICKS`] clicks have no slow phase and are left out
//! of the split (counted in [`SplitReport::users_too_short`]).
//!
//! **Memory.** The split holds every event once: the log's events, sorted in place by user and
//! time, in one shared array of which each [`Timeline`] is a range — 24 bytes an event, however
//! many users ([`Dataset::from_log`](crate::Dataset::from_log) moves the log's events there
//! instead of copying them). The array keeps the reader's capacity: shrinking it would copy
//! every event once more, while its unused tail was never written and holds no memory.

use std::ops::{Deref, Range};
use std::sync::Arc;

use serde::Serialize;

use super::{Event, EventKind, EventLog};

/// Clicks in the test phase.
pub const TEST_CLICKS: usize = 5;
/// Clicks in the fast-training phase.
pub const FAST_CLICKS: usize = 5;
/// The fewest clicks a user needs: test + fast + at least one slow-phase click.
pub const MIN_CLICKS: usize = TEST_CLICKS + FAST_CLICKS + 1;

/// One user's timeline of events as a slice (`&[Event]`): a run of the split's shared array,
/// or, once edited ([`Events::to_mut`]), events of its own.
#[derive(Clone)]
pub enum Events {
    Shared {
        all: Arc<Vec<Event>>,
        range: Range<usize>,
    },
    Owned(Vec<Event>),
}

impl Events {
    /// The events for editing in place (as `Cow::to_mut`): a run of the shared array is copied
    /// out first, so an edit never reaches another timeline.
    pub fn to_mut(&mut self) -> &mut Vec<Event> {
        if let Events::Shared { all, range } = self {
            *self = Events::Owned(all[range.clone()].to_vec());
        }
        match self {
            Events::Owned(events) => events,
            Events::Shared { .. } => unreachable!("made owned just above"),
        }
    }
}

impl Deref for Events {
    type Target = [Event];

    fn deref(&self) -> &[Event] {
        match self {
            Events::Shared { all, range } => &all[range.clone()],
            Events::Owned(events) => events,
        }
    }
}

impl<'a> IntoIterator for &'a Events {
    type Item = &'a Event;
    type IntoIter = std::slice::Iter<'a, Event>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl PartialEq for Events {
    fn eq(&self, other: &Events) -> bool {
        **self == **other
    }
}

impl Eq for Events {}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// One user's events in time order with the two phase boundaries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timeline {
    pub user: u32,
    /// Every event of the user, sorted by time (stable: ties keep file order).
    pub events: Events,
    /// Index of the first fast-phase event (the click `l−9`).
    pub fast_start: usize,
    /// Index of the first test-phase event (the click `l−4`).
    pub test_start: usize,
}

impl Timeline {
    /// Splits one user's events, already in time order; `None` if too few clicks.
    pub fn new(user: u32, events: Events) -> Option<Self> {
        let clicks: Vec<usize> = events
            .iter()
            .enumerate()
            .filter(|(_, e)| e.kind == EventKind::Click)
            .map(|(i, _)| i)
            .collect();
        let l = clicks.len();
        if l < MIN_CLICKS {
            return None;
        }
        Some(Timeline {
            user,
            fast_start: clicks[l - TEST_CLICKS - FAST_CLICKS],
            test_start: clicks[l - TEST_CLICKS],
            events,
        })
    }

    /// The slow-training phase: what the slow model may ever see of this user.
    pub fn slow(&self) -> &[Event] {
        &self.events[..self.fast_start]
    }

    /// The fast-training phase.
    pub fn fast(&self) -> &[Event] {
        &self.events[self.fast_start..self.test_start]
    }

    /// The test phase.
    pub fn test(&self) -> &[Event] {
        &self.events[self.test_start..]
    }

    /// Every event strictly earlier in time than the event at `index`: what a real-time model
    /// knows at that moment. Events sharing its timestamp are simultaneous with it and stay
    /// invisible whatever their file order (a phone never sees an event before it happened);
    /// past the end, every event.
    pub fn before(&self, index: usize) -> &[Event] {
        let Some(at) = self.events.get(index) else {
            return &self.events;
        };
        // Events are sorted by time: the visible prefix ends at the first event of `at`'s second.
        let end = self.events[..index].partition_point(|e| e.ts < at.ts);
        &self.events[..end]
    }

    /// The slow phase as visible at the moment of the event at `index` (strictly earlier events
    /// only: the slow phase's last events may share the timestamp of a later target).
    pub fn slow_before(&self, index: usize) -> &[Event] {
        let visible = self.before(index);
        &visible[..visible.len().min(self.fast_start)]
    }

    /// Indices (into [`Timeline::events`]) of the test-phase clicks: the evaluation targets.
    pub fn test_clicks(&self) -> impl Iterator<Item = usize> + '_ {
        (self.test_start..self.events.len()).filter(|&i| self.events[i].kind == EventKind::Click)
    }
}

/// Phase sizes in events.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PhaseCounts {
    pub clicks: usize,
    pub exposures: usize,
}

/// What the split produced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SplitReport {
    pub users: usize,
    pub users_too_short: usize,
    pub slow: PhaseCounts,
    pub fast: PhaseCounts,
    pub test: PhaseCounts,
}

/// The split data set: a timeline per kept user.
#[derive(Clone, Debug)]
pub struct Split {
    pub num_users: usize,
    pub num_items: usize,
    pub timelines: Vec<Timeline>,
    pub report: SplitReport,
}

impl Split {
    /// Splits every user of the log (a copy of its events); they need not be sorted.
    pub fn new(log: &EventLog) -> Split {
        Split::from_events(log.events.clone(), log.users.len(), log.items.len())
    }

    /// Splits `events` of `num_users` users and `num_items` items, taking them over: sorted in
    /// place by user and time (stable: ties keep their order), they become the timelines'
    /// shared array.
    pub fn from_events(mut events: Vec<Event>, num_users: usize, num_items: usize) -> Split {
        events.sort_by_key(|e| (e.user, e.ts));
        let all = Arc::new(events);
        let mut report = SplitReport::default();
        let mut timelines = Vec::new();
        let mut start = 0;
        while let Some(first) = all.get(start) {
            // Sorted by user: the user's run is the prefix of the rest with their index.
            let end = start + all[start..].partition_point(|e| e.user == first.user);
            let events = Events::Shared {
                all: all.clone(),
                range: start..end,
            };
            start = end;
            match Timeline::new(first.user, events) {
                Some(t) => {
                    add(&mut report.slow, t.slow());
                    add(&mut report.fast, t.fast());
                    add(&mut report.test, t.test());
                    timelines.push(t);
                }
                None => report.users_too_short += 1,
            }
        }
        report.users = timelines.len();
        Split {
            num_users,
            num_items,
            timelines,
            report,
        }
    }
}

fn add(counts: &mut PhaseCounts, events: &[Event]) {
    for e in events {
        match e.kind {
            EventKind::Click => counts.clicks += 1,
            EventKind::Exposure => counts.exposures += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;
    use crate::EventKind::{Click, Exposure};

    /// A hand-made user: 12 clicks c1..c12 at t = 10, 20, …, an exposure before c1, between c2
    /// and c3 (slow), right after c2's fast-phase boundary, and after the first test click.
    fn hand_made() -> EventLog {
        let mut log = EventLog::default();
        for k in 1..=12 {
            log.push_raw("u", &format!("c{k}"), 10 * k, Click);
        }
        log.push_raw("u", "e-slow", 5, Exposure);
        log.push_raw("u", "e-fast", 31, Exposure); // after c3 (first fast click, l−9 = 3)
        log.push_raw("u", "e-test", 85, Exposure); // after c8 (first test click, l−4 = 8)
        log.push_raw("u", "e-boundary", 30, Exposure); // same time as c3, later in the file
        log
    }

    fn names<'a>(log: &'a EventLog, events: &[Event]) -> Vec<&'a str> {
        events
            .iter()
            .map(|e| log.items.raw(e.item).unwrap())
            .collect()
    }

    #[test]
    fn split_cuts_last_five_and_five_before() {
        let log = hand_made();
        let split = Split::new(&log);
        let t = &split.timelines[0];
        assert_eq!(names(&log, t.slow()), ["e-slow", "c1", "c2"]);
        assert_eq!(
            names(&log, t.fast()),
            ["c3", "e-boundary", "e-fast", "c4", "c5", "c6", "c7"]
        );
        assert_eq!(
            names(&log, t.test()),
            ["c8", "e-test", "c9", "c10", "c11", "c12"]
        );
        let targets: Vec<_> = t
            .test_clicks()
            .map(|i| log.items.raw(t.events[i].item).unwrap())
            .collect();
        assert_eq!(targets, ["c8", "c9", "c10", "c11", "c12"]);
        assert_eq!(
            split.report.slow,
            PhaseCounts {
                clicks: 2,
                exposures: 1
            }
        );
        assert_eq!(
            split.report.fast,
            PhaseCounts {
                clicks: 5,
                exposures: 2
            }
        );
        assert_eq!(
            split.report.test,
            PhaseCounts {
                clicks: 5,
                exposures: 1
            }
        );
    }

    /// The split holds each event once: every timeline is a run of one shared array, and equals
    /// its user's events stably sorted by time.
    #[test]
    fn timelines_are_runs_of_one_array_holding_each_event_once() {
        // 60 users' events in a random file order, with many ties in time within a user.
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut log = EventLog::default();
        for _ in 0..3000 {
            let (user, item) = (rng.random_range(0..60), rng.random_range(0..300));
            let kind = if rng.random_bool(0.5) {
                Click
            } else {
                Exposure
            };
            log.push_raw(
                &format!("u{user}"),
                &format!("i{item}"),
                rng.random_range(0..400),
                kind,
            );
        }
        for k in 0..10 {
            log.push_raw("short", &format!("i{k}"), k, Click);
        }
        let mut per_user = vec![Vec::new(); log.users.len()];
        for e in &log.events {
            per_user[e.user as usize].push(*e);
        }
        let split = Split::new(&log);
        let Events::Shared { all, .. } = &split.timelines[0].events else {
            panic!("a split's timeline owns its events")
        };
        assert_eq!(all.len(), log.events.len());
        let clicks = |events: &[Event]| events.iter().filter(|e| e.kind == Click).count();
        let long = per_user.iter().filter(|e| clicks(e) >= MIN_CLICKS).count();
        assert_eq!(split.report.users, long);
        assert!(long > 50, "most users have a slow phase: {long}");
        assert_eq!(split.report.users_too_short, per_user.len() - long);
        for t in &split.timelines {
            assert!(matches!(&t.events, Events::Shared { all: a, .. } if Arc::ptr_eq(a, all)));
            let mut expected = per_user[t.user as usize].clone();
            expected.sort_by_key(|e| e.ts);
            assert_eq!(*t.events, expected[..]);
        }
        // An edit copies the run out: the other timelines and a clone keep theirs.
        let (mut edited, before) = (split.clone(), split.timelines[1].events.clone());
        edited.timelines[0].events.to_mut()[0].item += 1;
        edited.timelines[0].events.to_mut().pop();
        assert_eq!(edited.timelines[1].events, before);
        assert_ne!(edited.timelines[0].events, split.timelines[0].events);
        assert_eq!(
            edited.timelines[0].events.len() + 1,
            split.timelines[0].events.len()
        );
    }

    #[test]
    fn ties_in_time_keep_file_order() {
        let mut log = EventLog::default();
        for k in 0..11 {
            log.push_raw("u", &format!("c{k}"), 7, Click);
        }
        let split = Split::new(&log);
        let t = &split.timelines[0];
        let order: Vec<_> = names(&log, &t.events);
        let expected: Vec<String> = (0..11).map(|k| format!("c{k}")).collect();
        assert_eq!(order, expected);
        assert_eq!(names(&log, t.slow()), ["c0"]);
    }

    #[test]
    fn users_with_too_few_clicks_are_left_out() {
        let mut log = hand_made();
        for k in 0..10 {
            log.push_raw("short", &format!("c{k}"), k, Click);
        }
        let split = Split::new(&log);
        assert_eq!(split.report.users, 1);
        assert_eq!(split.report.users_too_short, 1);
    }

    /// Strict time: a target sharing its second with events earlier in the file never sees
    /// them (nor the slow phase's events of that second); a strictly earlier event it does.
    #[test]
    fn a_target_never_sees_an_event_of_its_own_second() {
        let mut log = EventLog::default();
        for k in 0..12 {
            log.push_raw("u", &format!("c{k}"), 10 * k, Click);
        }
        // Same second as the first test click (c7 at t = 70), earlier in the file.
        log.push_raw("u", "tie", 70, Exposure);
        log.push_raw("u", "c7-again", 70, Click);
        let split = Split::new(&log);
        let t = &split.timelines[0];
        // Of the 13 clicks, the ninth (c7-again) is the first test click.
        let target = (0..t.events.len())
            .find(|&i| log.items.raw(t.events[i].item) == Some("c7-again"))
            .unwrap();
        let tie = (0..t.events.len())
            .find(|&i| log.items.raw(t.events[i].item) == Some("tie"))
            .unwrap();
        assert!(tie < target, "the tie is earlier in file order");
        let visible = names(&log, t.before(target));
        assert!(
            !visible.contains(&"tie") && !visible.contains(&"c7"),
            "{visible:?}"
        );
        assert_eq!(visible.last(), Some(&"c6"));
        // The event right after a tie group sees all of it.
        assert_eq!(t.before(target + 1).len(), target + 1);
        // Past the end: everything.
        assert_eq!(t.before(usize::MAX).len(), t.events.len());
        // The slow phase seen from a target is cut the same way.
        assert!(t.slow_before(target).len() <= t.slow().len());
        assert_eq!(t.slow_before(t.events.len() - 1), t.slow());
    }

    #[test]
    fn before_is_the_real_time_prefix() {
        let log = hand_made();
        let split = Split::new(&log);
        let t = &split.timelines[0];
        let first_target = t.test_clicks().next().unwrap();
        assert_eq!(first_target, t.test_start);
        assert_eq!(
            t.before(first_target).len(),
            t.slow().len() + t.fast().len()
        );
    }
}
