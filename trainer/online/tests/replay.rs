//! The re-rank protocol replays the sync server's feeds: for the same model and the same
//! uploads, its feed of each user is the one the server sends.

use slowfast_core::manifest::{ItemTable, ITEMS_JSON};
use slowfast_core::wire::{UploadRequest, WireEvent};
use slowfast_data::protocol::{Query, Scorer};
use slowfast_data::EventKind;
use slowfast_feed::retrieval::{self, Retrieval};
use slowfast_feed::Items;
use slowfast_server::store::Store;
use slowfast_trainer::checkpoint::Vocabulary;
use slowfast_trainer::eval::rerank::{feeds, items, FeedConfig};
use slowfast_trainer::export::bundle::bundle_files;
use slowfast_trainer::models::features::last_items;
use slowfast_trainer::testing::{slow, tiny, untrained};

/// A small feed: a pool of 30 with the seen filter over 5 exposures, 10 items sent.
const FEED: FeedConfig = FeedConfig {
    retrieval: Retrieval { pool: 30, seen: 5 },
    k: 10,
};

/// The feed of each user is what the server makes from the same model: the item table
/// of the bundle's `items.json`, the click history the server's store returns for the
/// uploaded events, its retrieval pool and its order by the slow logit, cut at K.
#[test]
fn the_feed_is_what_the_server_sends_for_the_same_uploads() {
    let data = tiny();
    let split = &data.split;
    let model = untrained(&data);
    let window = model.config.windows.slow_history;
    let vocabulary = Vocabulary::from_split(&data.log, split).unwrap();
    let files = bundle_files(&model, &vocabulary).unwrap();
    let table: ItemTable = serde_json::from_slice(&files[ITEMS_JSON]).unwrap();
    let served = Items::new(table, model.config.dim).unwrap();
    let ours = items(&data, &model).unwrap();
    assert_eq!(ours.embeddings, served.embeddings);
    assert_eq!(ours.popularity, served.popularity);
    let feeds = feeds(split, &ours, &slow(&model), window, FEED).unwrap();
    assert_eq!(feeds.len(), split.timelines.len());

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sync.db").display().to_string();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let store = rt.block_on(Store::connect(&db)).unwrap();
    let popular = retrieval::by_popularity(&served);
    let mut filtered = 0;
    for feed in &feeds {
        let t = &split.timelines[feed.timeline];
        let uploaded = t.before(t.test_start);
        let raw = |i: u32| data.log.items.raw(i).unwrap().to_owned();
        let wire = |kind| {
            (uploaded.iter().filter(|e| e.kind == kind))
                .map(|e| WireEvent {
                    item: raw(e.item),
                    ts: e.ts * 1000,
                })
                .collect()
        };
        let upload = UploadRequest {
            user: None,
            idempotency_key: "end of the fast phase".into(),
            model_version: "v".into(),
            neg_memory: vec![0.0; model.config.dim],
            clicks: wire(EventKind::Click),
            exposures: wire(EventKind::Exposure),
        };
        let user = format!("u{}", t.user);
        rt.block_on(store.record_upload(&user, &upload, 0)).unwrap();
        let history: Vec<u32> = rt
            .block_on(store.recent_clicks(&user, window))
            .unwrap()
            .iter()
            .map(|id| served.index(id).unwrap())
            .collect();
        assert_eq!(history, last_items(uploaded, EventKind::Click, window));
        let shown: Vec<u32> = rt
            .block_on(store.recent_exposures(&user, FEED.retrieval.seen))
            .unwrap()
            .iter()
            .map(|id| served.index(id).unwrap())
            .collect();
        let mut expected = last_items(uploaded, EventKind::Exposure, FEED.retrieval.seen);
        expected.reverse();
        assert_eq!(shown, expected);
        let pool = retrieval::candidates(&served, &popular, &history, &shown, FEED.retrieval.pool);
        assert!(shown.iter().all(|i| !pool.contains(i)));
        filtered += shown.len();
        assert_eq!(feed.pool, pool);
        let q = Query {
            user: t.user,
            slow: uploaded,
            realtime: &[],
            uploaded,
            candidates: &pool,
        };
        let logits = slow(&model).score(&[q]).unwrap();
        let sent: Vec<u32> = (retrieval::feed_order(&logits, |_| false, FEED.k).into_iter())
            .map(|j| pool[j])
            .collect();
        assert_eq!(feed.items, sent);
        assert_eq!(sent.len(), FEED.k);
    }
    assert!(filtered > 0, "no feed had exposures to leave out");
}
