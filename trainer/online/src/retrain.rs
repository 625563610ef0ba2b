//! The next round of Algorithm 1 from what devices uploaded: `slowfast train --from-db` and the
//! demo's nightly retraining share this path.
//!
//! The sync server's store ([`Store::event_log`]) → the events mapped onto the item vocabulary
//! of the model the devices run (its `item_emb` rows; the server accepts no other item) → the
//! paper's per-user time split → further rounds of Algorithm 1 starting from the current
//! checkpoint → a bundle that is exported, read back and checked for parity before a server
//! swaps it in.
//!
//! The uploaded negative memories `r̂2` are not training inputs: devices upload the exposures
//! they were folded from, and the slow component refolds GRU_n over them with the weights it is
//! training (eq. 5). [`Uploads::neg_memories`] counts the devices whose latest `r̂2` came from
//! the model being continued, so an operator sees how many devices run it.

use std::path::Path;

use slowfast_core::manifest::Manifest;

use crate::error::{OnlineError, Result};
use slowfast_data::split::{Split, MIN_CLICKS};
use slowfast_data::{EventLog, IdMap};
use slowfast_server::store::Store;
use slowfast_trainer::checkpoint::{model_version, Checkpoint, Vocabulary};
use slowfast_trainer::export::bundle::{write_bundle, Provenance};
use slowfast_trainer::export::parity::TOLERANCE;
use slowfast_trainer::export::verify::{parity, read_verified};

/// What devices uploaded, as trainer data on a model's item vocabulary.
#[derive(Clone, Debug)]
pub struct Uploads {
    /// Every stored event whose item the model knows; item index = vocabulary index.
    pub log: EventLog,
    pub split: Split,
    /// Stored events on items outside the vocabulary, left out.
    pub unknown_items: usize,
    /// Users whose latest uploaded `r̂2` was computed with the model being continued.
    pub neg_memories: usize,
}

impl Uploads {
    /// Reads the store's event log and negative memories for a model with vocabulary `items`
    /// and version `model_version`.
    pub async fn read(store: &Store, items: &Vocabulary, model_version: &str) -> Result<Uploads> {
        let raw = store.event_log().await?;
        let neg_memories = store
            .neg_memories()
            .await?
            .values()
            .filter(|(version, _)| version == model_version)
            .count();
        Uploads::from_log(&raw, items, neg_memories)
    }

    /// Maps a log with raw item ids onto `items` (dropping unknown items) and splits it.
    pub fn from_log(raw: &EventLog, items: &Vocabulary, neg_memories: usize) -> Result<Uploads> {
        let mut log = EventLog {
            items: vocabulary_ids(items),
            ..EventLog::default()
        };
        let mut unknown_items = 0;
        for e in &raw.events {
            let (Some(user), Some(item)) = (raw.users.raw(e.user), raw.items.raw(e.item)) else {
                return Err(OnlineError::Unusable(format!(
                    "event of user {} on item {} has no raw id",
                    e.user, e.item
                )));
            };
            if log.items.get(item).is_none() {
                unknown_items += 1;
                continue;
            }
            log.push_raw(user, item, e.ts, e.kind);
        }
        let split = Split::new(&log);
        if split.timelines.is_empty() {
            return Err(OnlineError::Unusable(format!(
                "no user in the uploads has the {MIN_CLICKS} clicks a training split needs \
                 ({} events, {} users)",
                log.events.len(),
                log.users.len()
            )));
        }
        Ok(Uploads {
            log,
            split,
            unknown_items,
            neg_memories,
        })
    }
}

/// The vocabulary's ids interned in index order, so that index `i` is row `i` of `item_emb`.
fn vocabulary_ids(items: &Vocabulary) -> IdMap {
    let mut ids = IdMap::default();
    for id in &items.ids {
        ids.intern(id);
    }
    ids
}

/// How the next round trains.
#[derive(Clone, Copy, Debug)]
pub struct NextRound {
    /// Further rounds of Algorithm 1.
    pub rounds: usize,
    /// The most epochs per fit (early stopping may stop sooner).
    pub epochs: usize,
    /// Adam's learning rate for these rounds; the checkpoint's when `None`. A round starts Adam
    /// afresh (its moments are not checkpointed), so its first steps move every weight by
    /// about the learning rate: a continuation wants a smaller one than a model trained from
    /// scratch, or its epochs may all validate below the weights it started from (which
    /// [`fit`](slowfast_trainer::models::train::fit) then keeps).
    pub lr: Option<f64>,
}

/// Trains `ckpt` for `next.rounds` more rounds of Algorithm 1 on `uploads`, saving to `out`
/// after each; the vocabulary's click counts become those of the uploads (retrieval's
/// popularity). Items that joined the vocabulary before it ([`Checkpoint::extend_items`], e.g.
/// the day's new items of the catalogue) train here on what the uploads say about them. `source` names the data in the checkpoint (e.g. the database URL).
pub fn next_round(
    ckpt: &mut Checkpoint,
    uploads: &Uploads,
    next: NextRound,
    source: &str,
    out: &Path,
) -> Result<()> {
    if next.rounds == 0 || next.epochs == 0 {
        return Err(OnlineError::InvalidArgument(
            "the next round needs at least one round and one epoch".into(),
        ));
    }
    let items = Vocabulary {
        added: ckpt.config.items.added,
        ..Vocabulary::from_split(&uploads.log, &uploads.split)?
    };
    if items.ids != ckpt.config.items.ids {
        return Err(OnlineError::Unusable(
            "the uploads' vocabulary is not the checkpoint's".into(),
        ));
    }
    let config = &mut ckpt.config;
    config.items = items;
    config.dataset = source.to_owned();
    config.rounds = config.round + next.rounds;
    config.train.max_epochs = next.epochs;
    if let Some(lr) = next.lr {
        config.train.lr = lr;
    }
    Ok(ckpt.train(&uploads.split, out)?)
}

/// Exports `ckpt` as a bundle in `dir`, reads it back verified (hashes, names, shapes, device
/// load) and checks candle/ort/tract parity on it; the manifest of a bundle a server may swap in.
pub fn export_verified(ckpt: &Checkpoint, dir: &Path, seed: u64) -> Result<Manifest> {
    let from = Provenance {
        trained_on: ckpt.config.dataset.clone(),
        commit: ckpt.config.commit.clone(),
    };
    write_bundle(&ckpt.model, &ckpt.config.items, &from, dir)?;
    let verified = read_verified(dir)?;
    let version = model_version(&ckpt.model)?;
    if verified.manifest.model_version != version {
        return Err(OnlineError::Unusable(format!(
            "{}: model version {} is not the checkpoint's {version}",
            dir.display(),
            verified.manifest.model_version
        )));
    }
    let report = parity(&verified, Some(&ckpt.model), seed)?;
    if !report.passes() {
        return Err(OnlineError::Unusable(format!(
            "{}: runtimes disagree by {:e} (> {TOLERANCE:e})",
            dir.display(),
            report.max()
        )));
    }
    Ok(verified.manifest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use slowfast_data::EventKind;

    fn vocab(ids: &[&str]) -> Vocabulary {
        Vocabulary {
            ids: ids.iter().map(|s| s.to_string()).collect(),
            popularity: vec![0; ids.len()],
            added: 0,
        }
    }

    /// One user with `clicks` clicks on `i0, i1, …` (cycling over `items`) and an exposure
    /// of an unknown item between each.
    fn uploaded(clicks: usize, items: usize) -> EventLog {
        let mut log = EventLog::default();
        for k in 0..clicks {
            log.push_raw("u9", "stranger", 2 * k as i64, EventKind::Exposure);
            let item = format!("i{}", items - 1 - k % items);
            log.push_raw("u9", &item, 2 * k as i64 + 1, EventKind::Click);
        }
        log
    }

    #[test]
    fn uploads_keep_the_vocabulary_order_and_drop_unknown_items() {
        let items = vocab(&["i0", "i1", "i2", "i3"]);
        let u = Uploads::from_log(&uploaded(12, 4), &items, 3).unwrap();
        assert_eq!(u.unknown_items, 12);
        assert_eq!(u.neg_memories, 3);
        assert_eq!(u.log.events.len(), 12);
        for (i, id) in items.ids.iter().enumerate() {
            assert_eq!(u.log.items.get(id), Some(i as u32), "{id} keeps its row");
        }
        // The first upload is a click on i3: vocabulary index 3, not the first one seen.
        assert_eq!(u.log.events[0].item, 3);
        assert_eq!(u.split.num_items, 4);
        assert_eq!(u.split.timelines.len(), 1);
        let v = Vocabulary::from_split(&u.log, &u.split).unwrap();
        assert_eq!(v.ids, items.ids);
        assert_eq!(
            v.popularity.iter().sum::<u32>(),
            7,
            "slow and fast phase clicks"
        );
    }

    #[test]
    fn too_few_clicks_is_a_clear_error() {
        let items = vocab(&["i0", "i1"]);
        let err = Uploads::from_log(&uploaded(MIN_CLICKS - 1, 2), &items, 0).unwrap_err();
        assert!(err.to_string().contains("clicks"), "{err}");
    }
}
