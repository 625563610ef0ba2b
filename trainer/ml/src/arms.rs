//! The four arms of the online comparison, run on the same users, seeds and server feeds; they
//! differ only in how the app orders the feed before it shows the top of it (paper §5.1.3).
//!
//! | arm | order | why |
//! |---|---|---|
//! | slow only | the server's feed order: the slow model's logit (eq. 6, ort) | the cloud ranking alone |
//! | fast only | the device's fast model with zero priors (`r_t = r_n = 0`) | a device that gets no prior knowledge from the cloud: the same `fast.onnx` (one bundle, one contract), its S2F inputs (eq. 7) zeroed |
//! | vanilla slow+fast | fast logit with zero priors **plus** the slow logit | the slow ranking handed to the fast side as a feature with a fixed weight: the sum of two logits multiplies the two models' click odds |
//! | MC²-SF | the device's fast model with the feed's `r_t, r_n` (eq. 7–8) | the paper's slow-fast collaboration |
//!
//! Zero priors are not a separately trained fast-only model: they measure what the MC²-SF
//! device model can do without the cloud's priors, which is what a phone runs when the priors
//! are missing; a model trained without S2F would be a second bundle contract.

use serde::Serialize;
use slowfast_core::wire::FeedResponse;
use slowfast_core::Scored;

use crate::error::Result;

/// One arm of the online comparison; on the command line by its [`Arm::slug`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, clap::ValueEnum)]
pub enum Arm {
    #[value(name = "slow")]
    SlowOnly,
    #[value(name = "fast")]
    FastOnly,
    #[value(name = "vanilla")]
    Vanilla,
    #[value(name = "mc2sf")]
    Mc2sf,
}

impl Arm {
    /// Every arm, in report order.
    pub const ALL: [Arm; 4] = [Arm::SlowOnly, Arm::FastOnly, Arm::Vanilla, Arm::Mc2sf];

    /// The arm's name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Arm::SlowOnly => "slow only",
            Arm::FastOnly => "fast only",
            Arm::Vanilla => "vanilla slow+fast",
            Arm::Mc2sf => "MC²-SF",
        }
    }

    /// A file-name-safe name (directories, user ids).
    pub fn slug(self) -> &'static str {
        match self {
            Arm::SlowOnly => "slow",
            Arm::FastOnly => "fast",
            Arm::Vanilla => "vanilla",
            Arm::Mc2sf => "mc2sf",
        }
    }

    /// The feed's item ids in the order the app shows them; `rerank` is the device's fast
    /// model (`slowfast_core::SlowFast::rerank`), called at most once.
    pub fn order(
        self,
        feed: &FeedResponse,
        rerank: impl FnOnce(&FeedResponse) -> Result<Vec<Scored>>,
    ) -> Result<Vec<String>> {
        let scored = match self {
            Arm::SlowOnly => return Ok(feed.items.iter().map(|i| i.item.clone()).collect()),
            Arm::FastOnly => rerank(&without_priors(feed))?,
            Arm::Vanilla => rerank(&without_priors(feed))?
                .into_iter()
                .map(|s| Scored {
                    score: s.score + s.slow_score,
                    ..s
                })
                .collect(),
            Arm::Mc2sf => rerank(feed)?,
        };
        Ok(best_first(scored))
    }
}

/// The feed with its S2F priors `r_t, r_n` (eq. 7) set to zero; embeddings and slow logits kept.
pub fn without_priors(feed: &FeedResponse) -> FeedResponse {
    let mut feed = feed.clone();
    for it in &mut feed.items {
        it.r_t.iter_mut().for_each(|x| *x = 0.0);
        it.r_n.iter_mut().for_each(|x| *x = 0.0);
    }
    feed
}

/// Item ids by descending score; ties keep their order.
fn best_first(mut scored: Vec<Scored>) -> Vec<String> {
    scored.sort_by(|a, b| b.score.total_cmp(&a.score));
    scored.into_iter().map(|s| s.item).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use slowfast_core::wire::FeedItem;

    /// A feed of `a, b, c` in slow order (slow logits 3, 2, 1) with nonzero priors.
    fn feed() -> FeedResponse {
        let item = |id: &str, slow: f32| FeedItem {
            item: id.into(),
            embedding: vec![1.0, 2.0],
            r_t: vec![0.5, -0.5],
            r_n: vec![0.25, 0.75],
            slow_score: slow,
        };
        FeedResponse {
            model_version: "v".into(),
            items: vec![item("a", 3.0), item("b", 2.0), item("c", 1.0)],
        }
    }

    /// A device model whose logits are `fast` with priors and `fast_zero` without.
    fn device(
        fast: [f32; 3],
        fast_zero: [f32; 3],
    ) -> impl Fn(&FeedResponse) -> Result<Vec<Scored>> {
        move |f: &FeedResponse| {
            let zero = f.items.iter().all(|i| i.r_t.iter().all(|&x| x == 0.0));
            let logits = if zero { fast_zero } else { fast };
            Ok(f.items
                .iter()
                .zip(logits)
                .map(|(i, score)| Scored {
                    item: i.item.clone(),
                    score,
                    slow_score: i.slow_score,
                })
                .collect())
        }
    }

    #[test]
    fn each_arm_orders_by_its_own_score() {
        let f = feed();
        let dev = device([0.0, 1.0, 5.0], [4.0, 0.0, 1.5]);
        let order = |arm: Arm| arm.order(&f, &dev).unwrap();
        assert_eq!(order(Arm::SlowOnly), ["a", "b", "c"]);
        assert_eq!(order(Arm::Mc2sf), ["c", "b", "a"]);
        assert_eq!(order(Arm::FastOnly), ["a", "c", "b"]);
        // Vanilla: 3 + 4 = 7, 2 + 0 = 2, 1 + 1.5 = 2.5.
        assert_eq!(order(Arm::Vanilla), ["a", "c", "b"]);
        let dev = device([0.0; 3], [-2.0, 0.0, 1.5]);
        // 3 − 2 = 1, 2 + 0 = 2, 1 + 1.5 = 2.5: the device score overturns the slow order.
        assert_eq!(Arm::Vanilla.order(&f, &dev).unwrap(), ["c", "b", "a"]);
    }

    #[test]
    fn slow_only_never_runs_the_device_model() {
        let f = feed();
        let order = Arm::SlowOnly
            .order(&f, |_| panic!("slow only must not re-rank"))
            .unwrap();
        assert_eq!(order, ["a", "b", "c"]);
    }

    #[test]
    fn zero_priors_keep_embeddings_and_slow_logits() {
        let z = without_priors(&feed());
        for (a, b) in z.items.iter().zip(&feed().items) {
            assert_eq!(a.embedding, b.embedding);
            assert_eq!(a.slow_score, b.slow_score);
            assert!(a.r_t.iter().chain(&a.r_n).all(|&x| x == 0.0));
            assert_eq!(a.r_t.len(), b.r_t.len());
        }
    }

    #[test]
    fn the_command_line_names_an_arm_by_its_slug() {
        use clap::ValueEnum;
        for arm in Arm::ALL {
            assert_eq!(Arm::from_str(arm.slug(), false), Ok(arm));
        }
        assert!(Arm::from_str("slow only", false).is_err());
    }

    #[test]
    fn ties_keep_the_feed_order() {
        let f = feed();
        let order = Arm::Mc2sf.order(&f, device([1.0; 3], [1.0; 3])).unwrap();
        assert_eq!(order, ["a", "b", "c"]);
    }
}
