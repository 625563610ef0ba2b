//! From timelines to tensors: the windows each model reads and the training rows.
//!
//! A [`Moment`] is a user at one point in time: `slow` is what the cloud knows (the slow-phase
//! history up to that point), `realtime` what the device knows (every event before the
//! target). Windows keep the most recent items, oldest first, right-padded with a mask.

use candle_core::{Device, Tensor};
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::layers::length_mask;
use crate::error::{Result, TrainerError};
use slowfast_data::protocol::Query;
use slowfast_data::split::Split;
use slowfast_data::{Event, EventKind};

/// Window lengths (in items).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Windows {
    /// Slow-phase click history `H^S` read by DIN (eq. 1).
    pub slow_history: usize,
    /// Real-time click window `H^F_p` (eq. 3).
    pub clicks: usize,
    /// Real-time exposure window `H^F_n` (eq. 3), also the exposures folded into `r̂2`.
    pub exposures: usize,
}

impl Default for Windows {
    fn default() -> Self {
        Windows {
            slow_history: 50,
            clicks: 20,
            exposures: 20,
        }
    }
}

/// A user at one point in time.
#[derive(Clone, Copy, Debug)]
pub struct Moment<'a> {
    pub user: u32,
    /// The cloud's view: slow-phase events before this moment.
    pub slow: &'a [Event],
    /// The device's view: every event before this moment (empty for slow-only models).
    pub realtime: &'a [Event],
    /// The events whose exposures the negative memory `r̂2` (F2S, eq. 5) is folded from: the
    /// device's memory at the moment in slow training (the cloud refolds the logged
    /// exposures), the last upload otherwise (see [`Phase`] and [`slowfast_data::protocol`]).
    pub uploaded: &'a [Event],
}

impl Moment<'_> {
    /// The position in the user's timeline of the event this moment precedes: every event
    /// before it may be known (`slow` and `realtime` are both prefixes of the timeline).
    pub fn at(&self) -> usize {
        self.slow.len().max(self.realtime.len())
    }
}

impl<'a> From<&Query<'a>> for Moment<'a> {
    fn from(q: &Query<'a>) -> Self {
        Moment {
            user: q.user,
            slow: q.slow,
            realtime: q.realtime,
            uploaded: q.uploaded,
        }
    }
}

/// The last `n` items of `kind` in `events`, oldest first.
pub fn last_items(events: &[Event], kind: EventKind, n: usize) -> Vec<u32> {
    let mut out: Vec<u32> = events
        .iter()
        .rev()
        .filter(|e| e.kind == kind)
        .take(n)
        .map(|e| e.item)
        .collect();
    out.reverse();
    out
}

/// A right-padded window of item ids with its mask.
#[derive(Clone, Debug)]
pub struct Padded {
    /// (B, T) u32 ids; padding is item 0 and masked out.
    pub ids: Tensor,
    /// (B, T) f32, 1 for real items.
    pub mask: Tensor,
    /// Real lengths per row.
    pub lens: Vec<usize>,
}

impl Padded {
    /// Pads rows of ids to the longest row (at least 1 step, so empty windows still have a shape).
    pub fn new(rows: &[Vec<u32>], device: &Device) -> Result<Padded> {
        let steps = rows.iter().map(Vec::len).max().unwrap_or(0).max(1);
        let mut ids = vec![0u32; rows.len() * steps];
        for (r, row) in rows.iter().enumerate() {
            ids[r * steps..r * steps + row.len()].copy_from_slice(row);
        }
        let lens: Vec<usize> = rows.iter().map(Vec::len).collect();
        Ok(Padded {
            ids: Tensor::from_vec(ids, (rows.len(), steps), device)?,
            mask: length_mask(&lens, steps, device)?,
            lens,
        })
    }
}

/// Which windows a model reads; the others are not built.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Needs {
    /// `H^S`: slow-phase clicks.
    pub slow_history: bool,
    /// The uploaded exposures, folded by GRU_n into the negative memory `r̂2` (eq. 5).
    pub neg_memory: bool,
    /// Real-time click and exposure windows (eq. 3).
    pub realtime: bool,
}

impl Needs {
    /// The windows either of two models reads (a model that consumes another's output).
    pub fn union(self, other: Needs) -> Needs {
        Needs {
            slow_history: self.slow_history || other.slow_history,
            neg_memory: self.neg_memory || other.neg_memory,
            realtime: self.realtime || other.realtime,
        }
    }
}

/// One scored pair: a moment (index into the batch's moments), a candidate and its label.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Row {
    pub moment: usize,
    pub item: u32,
    pub label: f32,
}

/// The tensors of a batch of rows. Windows are built once per moment (M rows); models that
/// need them per scored row expand them with [`Batch::row_moment`].
#[derive(Clone, Debug)]
pub struct Batch {
    /// (B) u32 user of each row.
    pub users: Tensor,
    /// (B) u32 candidate of each row.
    pub items: Tensor,
    /// (B, 1) labels.
    pub labels: Tensor,
    /// (B) u32 index of each row's moment.
    pub row_moment: Tensor,
    pub slow_history: Option<Padded>,
    pub neg_memory: Option<Padded>,
    pub clicks: Option<Padded>,
    pub exposures: Option<Padded>,
}

impl Batch {
    /// Builds the windows `needs` asks for, once per moment.
    pub fn new(
        moments: &[Moment<'_>],
        rows: &[Row],
        needs: Needs,
        w: Windows,
        device: &Device,
    ) -> Result<Batch> {
        let window = |on: bool, f: &dyn Fn(&Moment<'_>) -> Vec<u32>| -> Result<Option<Padded>> {
            if !on {
                return Ok(None);
            }
            Padded::new(&moments.iter().map(f).collect::<Vec<_>>(), device).map(Some)
        };
        let n = rows.len();
        Ok(Batch {
            users: Tensor::from_vec(
                rows.iter()
                    .map(|r| moments[r.moment].user)
                    .collect::<Vec<_>>(),
                n,
                device,
            )?,
            items: Tensor::from_vec(rows.iter().map(|r| r.item).collect::<Vec<_>>(), n, device)?,
            labels: Tensor::from_vec(
                rows.iter().map(|r| r.label).collect::<Vec<_>>(),
                (n, 1),
                device,
            )?,
            row_moment: Tensor::from_vec(
                rows.iter().map(|r| r.moment as u32).collect::<Vec<_>>(),
                n,
                device,
            )?,
            slow_history: window(needs.slow_history, &|m| {
                last_items(m.slow, EventKind::Click, w.slow_history)
            })?,
            neg_memory: window(needs.neg_memory, &|m| {
                last_items(m.uploaded, EventKind::Exposure, w.exposures)
            })?,
            clicks: window(needs.realtime, &|m| {
                last_items(m.realtime, EventKind::Click, w.clicks)
            })?,
            exposures: window(needs.realtime, &|m| {
                last_items(m.realtime, EventKind::Exposure, w.exposures)
            })?,
        })
    }

    /// Repeats a per-moment tensor (M, …) per row (B, …).
    pub fn per_row(&self, per_moment: &Tensor) -> Result<Tensor> {
        Ok(per_moment.index_select(&self.row_moment, 0)?)
    }

    /// A window the model declared in its [`Needs`].
    pub fn window<'b>(&self, w: &'b Option<Padded>, name: &str) -> Result<&'b Padded> {
        w.as_ref().ok_or_else(|| {
            TrainerError::InvalidArgument(format!("batch built without the {name} window"))
        })
    }
}

/// A training positive: a moment and the item clicked at it.
#[derive(Clone, Copy, Debug)]
pub struct Positive<'a> {
    pub moment: Moment<'a>,
    pub item: u32,
}

/// Which clicks become training positives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Slow-phase clicks; the cloud's view is the slow phase up to the click (slow training),
    /// and `r̂2` the device's memory at the click, refolded from the logged exposures.
    Slow,
    /// Fast-phase clicks; the cloud's view is the whole slow phase (fast training with priors),
    /// and `r̂2` the one uploaded when the fast phase began (its slow-phase exposures).
    Fast,
    /// Slow-phase clicks seen with real-time windows (fast pre-training for `MC2-SF+`); `r̂2`
    /// as for [`Phase::Slow`].
    SlowRealTime,
}

/// Training positives and one validation positive per user.
#[derive(Clone, Debug, Default)]
pub struct Positives<'a> {
    pub train: Vec<Positive<'a>>,
    /// The phase's last click of each user, held out for early stopping.
    pub valid: Vec<Positive<'a>>,
}

impl<'a> Positives<'a> {
    /// What one fit trains and validates on: the first `max_valid` held-out clicks validate
    /// (early stopping); the others train with every other positive, so no click before the
    /// test phase is wasted and none that validates is ever trained on.
    pub fn carve(&self, max_valid: usize) -> (Vec<Positive<'a>>, &[Positive<'a>]) {
        let (held, spare) = self.valid.split_at(max_valid.min(self.valid.len()));
        (self.train.iter().chain(spare).copied().collect(), held)
    }
}

/// Training positives of `phase` and one validation positive per user (the phase's last
/// click, held out from training for early stopping: never a test-phase event).
pub fn positives(split: &Split, phase: Phase) -> Positives<'_> {
    let mut train = Vec::new();
    let mut valid = Vec::new();
    for t in &split.timelines {
        let (from, to) = match phase {
            Phase::Slow | Phase::SlowRealTime => (0, t.fast_start),
            Phase::Fast => (t.fast_start, t.test_start),
        };
        let clicks: Vec<usize> = (from..to)
            .filter(|&j| t.events[j].kind == EventKind::Click)
            .collect();
        for (k, &j) in clicks.iter().enumerate() {
            let slow = match phase {
                Phase::Slow | Phase::SlowRealTime => t.before(j),
                Phase::Fast => t.slow_before(j),
            };
            let realtime = if phase == Phase::Slow {
                &[][..]
            } else {
                t.before(j)
            };
            let p = Positive {
                moment: Moment {
                    user: t.user,
                    slow,
                    realtime,
                    uploaded: slow,
                },
                item: t.events[j].item,
            };
            if k + 1 == clicks.len() {
                valid.push(p);
            } else {
                train.push(p);
            }
        }
    }
    Positives { train, valid }
}

/// Every training-phase click seen in real time; the fast phase's held-out click of each user
/// validates (the slow phase's joins training). Never a test-phase event.
pub fn realtime_positives(split: &Split) -> Positives<'_> {
    let slow = positives(split, Phase::SlowRealTime);
    let fast = positives(split, Phase::Fast);
    let mut train = slow.train;
    train.extend(slow.valid);
    train.extend(fast.train);
    Positives {
        train,
        valid: fast.valid,
    }
}

/// Draws `n` training negatives uniformly over all items, never the positive itself.
pub fn sample_negatives(rng: &mut impl Rng, num_items: usize, positive: u32, n: usize) -> Vec<u32> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n && num_items > 1 {
        let item = rng.random_range(0..num_items as u32);
        if item != positive {
            out.push(item);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use slowfast_data::EventLog;

    fn split() -> Split {
        let mut log = EventLog::default();
        for k in 0..14 {
            log.push_raw("u", &format!("c{k}"), 2 * k, EventKind::Click);
            log.push_raw("u", &format!("x{k}"), 2 * k + 1, EventKind::Exposure);
        }
        Split::new(&log)
    }

    #[test]
    fn last_items_keeps_the_most_recent_oldest_first() {
        let s = split();
        let t = &s.timelines[0];
        let ids = last_items(t.slow(), EventKind::Click, 2);
        assert_eq!(ids, [t.events[4].item, t.events[6].item]);
    }

    #[test]
    fn positives_hold_out_the_last_click_of_the_phase_and_never_see_the_test_phase() {
        let s = split();
        let t = &s.timelines[0];
        let Positives { train, valid } = positives(&s, Phase::Slow);
        assert_eq!(
            train.len() + valid.len(),
            4,
            "14 clicks: 4 slow, 5 fast, 5 test"
        );
        assert_eq!(valid.len(), 1);
        assert_eq!(valid[0].item, t.events[6].item);
        let Positives { train, valid } = positives(&s, Phase::Fast);
        assert_eq!((train.len(), valid.len()), (4, 1));
        for p in train.iter().chain(&valid) {
            assert_eq!(
                p.moment.slow.len(),
                t.slow().len(),
                "priors come from the slow phase"
            );
            assert!(p.moment.realtime.len() < t.test_start);
        }
    }

    #[test]
    fn a_fit_trains_on_the_held_out_clicks_validation_does_not_use_and_never_on_the_test_phase() {
        let mut log = EventLog::default();
        for user in ["a", "b", "c"] {
            for k in 0..14 {
                log.push_raw(user, &format!("{user}{k}"), k, EventKind::Click);
            }
        }
        let s = Split::new(&log);
        for phase in [Phase::Slow, Phase::Fast, Phase::SlowRealTime] {
            let data = positives(&s, phase);
            assert_eq!(data.valid.len(), 3);
            let (train, valid) = data.carve(1);
            let items = |ps: &[Positive<'_>]| ps.iter().map(|p| p.item).collect::<Vec<_>>();
            assert_eq!(items(valid), [data.valid[0].item], "{phase:?}");
            let trained = items(&train);
            assert!(!trained.contains(&data.valid[0].item), "{phase:?}");
            for held in &data.valid[1..] {
                assert!(
                    trained.contains(&held.item),
                    "{phase:?}: unused click left out"
                );
            }
            assert_eq!(train.len(), data.train.len() + 2);
            for p in &train {
                let t = (s.timelines.iter().find(|t| t.user == p.moment.user)).unwrap();
                assert!(
                    p.moment.at() < t.test_start,
                    "{phase:?}: a test-phase click"
                );
                assert_eq!(t.events[p.moment.at()].item, p.item);
            }
            let (all, none) = data.carve(0);
            assert_eq!((all.len(), none.len()), (data.train.len() + 3, 0));
            let (only, every) = data.carve(10);
            assert_eq!((only.len(), every.len()), (data.train.len(), 3));
        }
    }

    #[test]
    fn batch_builds_windows_once_per_moment() {
        let s = split();
        let t = &s.timelines[0];
        let m = Moment {
            user: t.user,
            slow: t.slow(),
            realtime: t.before(t.test_start),
            uploaded: t.before(t.test_start),
        };
        let rows = [
            Row {
                moment: 0,
                item: 3,
                label: 1.0,
            },
            Row {
                moment: 0,
                item: 5,
                label: 0.0,
            },
        ];
        let needs = Needs {
            slow_history: true,
            neg_memory: true,
            realtime: true,
        };
        let w = Windows {
            slow_history: 3,
            clicks: 2,
            exposures: 4,
        };
        let b = Batch::new(&[m], &rows, needs, w, &Device::Cpu).unwrap();
        assert_eq!(b.slow_history.as_ref().unwrap().lens, [3]);
        assert_eq!(b.clicks.as_ref().unwrap().lens, [2]);
        assert_eq!(b.exposures.as_ref().unwrap().ids.dims(), [1, 4]);
        assert_eq!(
            b.per_row(&b.exposures.as_ref().unwrap().ids)
                .unwrap()
                .dims(),
            [2, 4]
        );
        assert_eq!(b.labels.dims(), [2, 1]);
    }
}
