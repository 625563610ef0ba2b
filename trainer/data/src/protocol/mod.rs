//! The evaluation protocol of paper §5.1.2: which history each kind of model may see, and
//! the loop that scores every case and averages the metrics.
//!
//! The slow component cannot use test-phase events in time, so it predicts every test item
//! from the **slow-phase history only**; the fast component runs on the device and sees
//! **every event before the target** (real time). The negative memory `r̂2` (F2S, eq. 5) is
//! the one channel from the device to the cloud between slow updates: the device folds every
//! exposure into it and uploads it on a schedule (Algorithm 1, fast inference steps 1–2),
//! here at the end of each phase, so at test time the cloud holds the `r̂2` of **every event
//! before the test phase**: the fast phase's exposures too, never a test-phase event.

pub mod metrics;
pub mod sampler;

use crate::error::{DataError, Result};
use crate::parallel::{par_map, threads};
use crate::split::Split;
use crate::Event;

use self::metrics::{pessimistic_rank, MetricSums};
use self::sampler::{Case, NEGATIVES};

/// Which history a model is allowed to see at test time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    /// The slow-training phase only, with the `r̂2` uploaded when the fast phase ended (cloud
    /// models).
    Slow,
    /// Every event before the target (on-device models).
    RealTime,
}

/// What a model is asked to score: a user, the histories its [`View`] allows, the candidates.
#[derive(Clone, Copy, Debug)]
pub struct Query<'a> {
    pub user: u32,
    /// The slow-training phase: what the cloud knows of the user.
    pub slow: &'a [Event],
    /// Every event before the target for [`View::RealTime`] models; empty for [`View::Slow`].
    pub realtime: &'a [Event],
    /// The events whose exposures the negative memory `r̂2` the cloud holds was folded from
    /// (uploaded by the device at the end of the fast phase): every event before the test phase.
    pub uploaded: &'a [Event],
    pub candidates: &'a [u32],
}

/// A trained model as the evaluation harness sees it.
pub trait Scorer: Send + Sync {
    /// Why scoring failed: the error of the layer the model runs in. The harness's own
    /// failures (a model that returns the wrong number of scores) become one of them.
    type Error: From<DataError> + Send;

    /// Which history the model may see.
    fn view(&self) -> View;

    /// Scores a batch of queries: one score per candidate, concatenated in query order.
    fn score(&self, queries: &[Query<'_>]) -> Result<Vec<f32>, Self::Error>;
}

/// A shared model scores as itself (the zoo hands out cached models this way).
impl<S: Scorer + ?Sized> Scorer for std::sync::Arc<S> {
    type Error = S::Error;

    fn view(&self) -> View {
        (**self).view()
    }

    fn score(&self, queries: &[Query<'_>]) -> Result<Vec<f32>, S::Error> {
        (**self).score(queries)
    }
}

/// The query a model with `view` gets for a case: the slow phase and the last upload of `r̂2`
/// always, the real-time prefix only for on-device models.
pub fn query<'a>(split: &'a Split, case: &'a Case, view: View) -> Query<'a> {
    let t = &split.timelines[case.timeline];
    Query {
        user: t.user,
        slow: t.slow_before(case.target),
        realtime: match view {
            View::Slow => &[],
            View::RealTime => t.before(case.target),
        },
        uploaded: t.before(t.test_start),
        candidates: &case.candidates,
    }
}

/// Cases scored per call to [`Scorer::score`] with the sampled candidates; a batch of longer
/// candidate lists (the full ranking) holds as many candidates, in fewer cases.
pub const BATCH_CASES: usize = 64;

/// Candidates scored per call to [`Scorer::score`] (at least one case per call).
const BATCH_CANDIDATES: usize = BATCH_CASES * (NEGATIVES + 1);

/// Scores every case with `model` and returns the metric sums; `progress` is called with the
/// number of cases done after each batch.
pub fn evaluate<E: From<DataError> + Send>(
    split: &Split,
    cases: &[Case],
    model: &dyn Scorer<Error = E>,
    progress: impl FnMut(usize),
) -> Result<MetricSums, E> {
    let mut sums = MetricSums::default();
    for rank in ranks(split, cases, model, progress)? {
        sums.add_rank(rank as usize);
    }
    Ok(sums)
}

/// Scores every case with `model` and returns the 0-based pessimistic rank of each positive
/// among its candidates, in case order; `progress` is called with the number of cases done
/// after each batch.
pub fn ranks<E: From<DataError> + Send>(
    split: &Split,
    cases: &[Case],
    model: &dyn Scorer<Error = E>,
    mut progress: impl FnMut(usize),
) -> Result<Vec<u32>, E> {
    let mut batches: Vec<&[Case]> = Vec::new();
    let mut rest = cases;
    while !rest.is_empty() {
        let mut n = 0;
        let mut candidates = 0;
        while n < rest.len()
            && (n == 0 || candidates + rest[n].candidates.len() <= BATCH_CANDIDATES)
        {
            candidates += rest[n].candidates.len();
            n += 1;
        }
        let (batch, tail) = rest.split_at(n);
        batches.push(batch);
        rest = tail;
    }
    // Batches are scored in waves on the training threads; the ranks are kept in case
    // order, so the result does not depend on the threads.
    let mut all = Vec::with_capacity(cases.len());
    for wave in batches.chunks(threads()) {
        for batch in par_map(wave, |batch| rank_batch(split, batch, model))? {
            progress(batch.len());
            all.extend(batch);
        }
    }
    Ok(all)
}

/// The ranks of one batch of cases, scored in one call to [`Scorer::score`].
fn rank_batch<E: From<DataError> + Send>(
    split: &Split,
    batch: &[Case],
    model: &dyn Scorer<Error = E>,
) -> Result<Vec<u32>, E> {
    let queries: Vec<Query<'_>> = batch
        .iter()
        .map(|case| query(split, case, model.view()))
        .collect();
    let scores = model.score(&queries)?;
    let expected: usize = queries.iter().map(|q| q.candidates.len()).sum();
    if scores.len() != expected {
        return Err(DataError::Unusable(format!(
            "model returned {} scores for {expected} candidates",
            scores.len()
        ))
        .into());
    }
    let mut offset = 0;
    let mut ranks = Vec::with_capacity(queries.len());
    for q in &queries {
        let n = q.candidates.len();
        ranks.push(pessimistic_rank(&scores[offset..offset + n]) as u32);
        offset += n;
    }
    Ok(ranks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::sampler::{sample_cases, NegativePool, NEGATIVES};
    use crate::{EventKind, EventLog};

    /// Scores the candidate that was clicked most recently in the visible history highest;
    /// used to check that each view exposes exactly the history it promises.
    struct LastClick(View);

    impl Scorer for LastClick {
        type Error = DataError;

        fn view(&self) -> View {
            self.0
        }
        fn score(&self, queries: &[Query<'_>]) -> Result<Vec<f32>> {
            Ok(queries
                .iter()
                .flat_map(|q| {
                    let history = if q.realtime.is_empty() {
                        q.slow
                    } else {
                        q.realtime
                    };
                    let last = history.iter().rev().find(|e| e.kind == EventKind::Click);
                    q.candidates
                        .iter()
                        .map(move |&c| f32::from(u8::from(last.is_some_and(|e| e.item == c))))
                })
                .collect())
        }
    }

    /// One user who clicks item 0 over and over, with filler items so negatives exist.
    fn repeat_clicker() -> Split {
        let mut log = EventLog::default();
        for i in 0..300 {
            log.push_raw("filler", &format!("i{i}"), 0, EventKind::Exposure);
        }
        for t in 0..20 {
            log.push_raw(
                "u",
                &format!("i{}", if t < 15 { 1 + t } else { 0 }),
                t,
                EventKind::Click,
            );
        }
        Split::new(&log)
    }

    #[test]
    fn real_time_view_sees_earlier_test_clicks_slow_view_does_not() {
        let split = repeat_clicker();
        let cases = sample_cases(&split, 3, NEGATIVES, NegativePool::default()).unwrap();
        // The filler user has no clicks, so it is left out of the split: 5 cases, all of "u".
        assert_eq!(cases.len(), 5);
        // Test clicks are all item 0; real time sees the previous test click from case 2 on.
        let fast = evaluate(&split, &cases, &LastClick(View::RealTime), |_| {}).unwrap();
        assert!((fast.means()[0] - 0.8).abs() < 1e-12, "HR@1 = 4/5");
        // The slow phase never contains item 0, so the slow view never finds it.
        let slow = evaluate(&split, &cases, &LastClick(View::Slow), |_| {}).unwrap();
        assert_eq!(slow.means()[0], 0.0);
    }

    /// F2S: whatever the view, the cloud's `r̂2` is the device's upload at the end of the fast
    /// phase, folded from every exposure before the test phase and from none after it.
    #[test]
    fn every_view_gets_the_negative_memory_uploaded_when_the_fast_phase_ends() {
        let mut log = EventLog::default();
        for i in 0..300 {
            log.push_raw("filler", &format!("f{i}"), 0, EventKind::Exposure);
        }
        for t in 0..25 {
            log.push_raw("u", &format!("c{t}"), 2 * t, EventKind::Click);
            log.push_raw("u", &format!("x{t}"), 2 * t + 1, EventKind::Exposure);
        }
        let split = Split::new(&log);
        let t = &split.timelines[0];
        let cases = sample_cases(&split, 1, NEGATIVES, NegativePool::default()).unwrap();
        assert_eq!(cases.len(), 5);
        for case in &cases {
            for view in [View::Slow, View::RealTime] {
                let q = query(&split, case, view);
                assert_eq!(q.uploaded.len(), t.test_start, "{view:?}");
                assert_eq!(q.slow, t.slow(), "the click history stays the slow phase");
                let fast_exposures = t.fast().iter().filter(|e| e.kind == EventKind::Exposure);
                assert!(fast_exposures.count() > 0);
                assert!(q.uploaded.ends_with(t.fast()), "{view:?}");
            }
        }
    }

    /// Scores candidate `c` as `c mod 7` and records the candidates of every call.
    struct Recording(std::sync::Mutex<Vec<usize>>);

    impl Scorer for Recording {
        type Error = DataError;

        fn view(&self) -> View {
            View::Slow
        }
        fn score(&self, queries: &[Query<'_>]) -> Result<Vec<f32>> {
            let scores: Vec<f32> = queries
                .iter()
                .flat_map(|q| q.candidates.iter().map(|&c| (c % 7) as f32))
                .collect();
            self.0.lock().unwrap().push(scores.len());
            Ok(scores)
        }
    }

    #[test]
    fn ranks_are_per_case_and_long_candidate_lists_batch_fewer_cases() {
        let split = repeat_clicker();
        let mut cases = sample_cases(&split, 3, NEGATIVES, NegativePool::default()).unwrap();
        for (k, case) in cases.iter_mut().enumerate() {
            // Lists of 3,000 candidates: two fit a batch of the sampled candidates' worth.
            case.candidates = (0..3000).map(|c| (c * 13 + k as u32) % 300).collect();
        }
        let model = Recording(Default::default());
        let mut done = 0;
        let ranks = ranks(&split, &cases, &model, |n| done += n).unwrap();
        assert_eq!(done, cases.len());
        for (case, rank) in cases.iter().zip(&ranks) {
            let scores: Vec<f32> = case.candidates.iter().map(|&c| (c % 7) as f32).collect();
            assert_eq!(*rank as usize, pessimistic_rank(&scores));
        }
        let mut calls = model.0.into_inner().unwrap();
        calls.sort_unstable();
        assert_eq!(
            calls,
            [3000, 6000, 6000],
            "at most {BATCH_CANDIDATES} per call"
        );
        let sums = evaluate(&split, &cases, &Recording(Default::default()), |_| {}).unwrap();
        assert_eq!(sums.cases, 5);
    }

    #[test]
    fn wrong_number_of_scores_is_an_error() {
        struct Short;
        impl Scorer for Short {
            type Error = DataError;

            fn view(&self) -> View {
                View::Slow
            }
            fn score(&self, _: &[Query<'_>]) -> Result<Vec<f32>> {
                Ok(vec![0.0])
            }
        }
        let split = repeat_clicker();
        let cases = sample_cases(&split, 3, NEGATIVES, NegativePool::default()).unwrap();
        assert!(evaluate(&split, &cases, &Short, |_| {}).is_err());
    }
}
