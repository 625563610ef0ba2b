//! Bounded windows of recent events: the real-time clicks `H^F_p` and exposures `H^F_n` the
//! fast component reads (eq. 3, 7–8), and the retained exposure log `r̂2` is recomputed from.

use std::collections::VecDeque;

/// One recorded event as the windows keep it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WindowEvent {
    /// The store's sequence number (monotone, never reused).
    pub seq: i64,
    pub item: String,
    /// Unix milliseconds.
    pub ts: i64,
}

/// The last `capacity` events of one kind, oldest first. Pushing is O(1).
#[derive(Clone, Debug)]
pub struct Window {
    capacity: usize,
    events: VecDeque<WindowEvent>,
}

impl Window {
    /// A window holding at most `capacity` (≥ 1) events.
    pub fn new(capacity: usize) -> Window {
        let capacity = capacity.max(1);
        Window {
            capacity,
            events: VecDeque::with_capacity(capacity),
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Appends `event` as the newest; returns the oldest event if it fell out.
    pub fn push(&mut self, event: WindowEvent) -> Option<WindowEvent> {
        let evicted = if self.events.len() == self.capacity {
            self.events.pop_front()
        } else {
            None
        };
        self.events.push_back(event);
        evicted
    }

    /// Oldest first.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &WindowEvent> + ExactSizeIterator {
        self.events.iter()
    }

    /// The newest `n` events, oldest first.
    #[cfg(test)]
    pub fn newest(&self, n: usize) -> impl Iterator<Item = &WindowEvent> {
        self.events.iter().skip(self.events.len().saturating_sub(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ev(seq: i64) -> WindowEvent {
        WindowEvent {
            seq,
            item: seq.to_string(),
            ts: seq * 10,
        }
    }

    #[test]
    fn evicts_the_oldest_when_full() {
        let mut w = Window::new(2);
        assert_eq!(w.push(ev(1)), None);
        assert_eq!(w.push(ev(2)), None);
        assert_eq!(w.push(ev(3)), Some(ev(1)));
        let seqs: Vec<i64> = w.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, vec![2, 3]);
        let newest: Vec<i64> = w.newest(1).map(|e| e.seq).collect();
        assert_eq!(newest, vec![3]);
    }

    proptest! {
        /// After any sequence of pushes the window holds exactly the last `capacity` events
        /// in order, and every evicted event is the one that fell off the front.
        #[test]
        fn holds_the_last_capacity_events_in_order(cap in 1usize..20, n in 0usize..100) {
            let mut w = Window::new(cap);
            let mut evicted = Vec::new();
            for s in 0..n as i64 {
                if let Some(e) = w.push(ev(s)) {
                    evicted.push(e.seq);
                }
            }
            let kept: Vec<i64> = w.iter().map(|e| e.seq).collect();
            let start = n.saturating_sub(cap) as i64;
            prop_assert_eq!(kept, (start..n as i64).collect::<Vec<_>>());
            prop_assert_eq!(evicted, (0..start).collect::<Vec<_>>());
            let k = cap / 2;
            let newest: Vec<i64> = w.newest(k).map(|e| e.seq).collect();
            let from = (n - n.min(cap).min(k)) as i64;
            prop_assert_eq!(newest, (from..n as i64).collect::<Vec<_>>());
        }
    }
}
