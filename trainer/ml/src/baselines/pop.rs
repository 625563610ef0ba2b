//! Popularity: scores an item by its click count in the training phases (slow + fast), the
//! same for every user. Test-phase clicks are never counted.

use crate::error::{Result, TrainerError};
use slowfast_data::protocol::{Query, Scorer, View};
use slowfast_data::split::Split;
use slowfast_data::EventKind;

/// Most-popular baseline.
#[derive(Clone, Debug)]
pub struct Pop {
    clicks: Vec<u32>,
}

impl Pop {
    /// Counts training-phase clicks per item.
    pub fn fit(split: &Split) -> Pop {
        let mut clicks = vec![0u32; split.num_items];
        for t in &split.timelines {
            for e in t.slow().iter().chain(t.fast()) {
                if e.kind == EventKind::Click {
                    clicks[e.item as usize] += 1;
                }
            }
        }
        Pop { clicks }
    }
}

impl Scorer for Pop {
    type Error = TrainerError;

    fn view(&self) -> View {
        View::Slow
    }

    fn score(&self, queries: &[Query<'_>]) -> Result<Vec<f32>> {
        Ok(queries
            .iter()
            .flat_map(|q| q.candidates.iter())
            .map(|&c| self.clicks.get(c as usize).map_or(0.0, |&n| n as f32))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use slowfast_data::EventLog;

    #[test]
    fn counts_training_clicks_only() {
        let mut log = EventLog::default();
        // 11 clicks on distinct items, then 5 test clicks on item "t" (never counted).
        for k in 0..11 {
            log.push_raw("u", &format!("i{k}"), k, EventKind::Click);
        }
        log.push_raw("u", "i0", 11, EventKind::Exposure);
        for k in 0..4 {
            log.push_raw("u", "t", 20 + k, EventKind::Click);
        }
        let split = Split::new(&log);
        let pop = Pop::fit(&split);
        let t = log.items.get("t").unwrap();
        let i1 = log.items.get("i1").unwrap();
        let q = Query {
            user: 0,
            slow: &[],
            realtime: &[],
            uploaded: &[],
            candidates: &[t, i1],
        };
        assert_eq!(pop.score(&[q]).unwrap(), [0.0, 1.0]);
    }
}
