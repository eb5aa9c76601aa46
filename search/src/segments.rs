//! What the index keeps per segment: made once from a segment's documents (which never change),
//! forgotten when merges take the segment away.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use tantivy::index::SegmentId;
use tantivy::Searcher;

/// One value per segment, kept while a searcher still has the segment (see `retain`).
pub(crate) struct PerSegment<T>(Mutex<HashMap<SegmentId, T>>);

impl<T> Default for PerSegment<T> {
    fn default() -> Self {
        Self(Mutex::default())
    }
}

impl<T: Clone> PerSegment<T> {
    /// The segment's value, if one is kept.
    pub(crate) fn get(&self, segment: SegmentId) -> Option<T> {
        self.lock().get(&segment).cloned()
    }

    /// The segment's value, a default one kept first if it has none: for cells that concurrent
    /// searches then fill once (the default is made under the lock, so it must be cheap).
    pub(crate) fn cell(&self, segment: SegmentId) -> T
    where
        T: Default,
    {
        self.lock().entry(segment).or_default().clone()
    }

    /// Keeps `value` unless another thread kept one first; answers the one kept.
    pub(crate) fn keep(&self, segment: SegmentId, value: T) -> T {
        self.lock().entry(segment).or_insert(value).clone()
    }

    /// Keeps `value`, replacing what the segment had (a value that depends on its deletes).
    pub(crate) fn replace(&self, segment: SegmentId, value: T) {
        self.lock().insert(segment, value);
    }

    /// Forgets the segments the searcher no longer has (merged away).
    pub(crate) fn retain(&self, searcher: &Searcher) {
        let live: Vec<SegmentId> = searcher.segment_readers().iter().map(|s| s.segment_id()).collect();
        self.lock().retain(|id, _| live.contains(id));
    }

    /// How many kept values `counted` accepts.
    #[cfg(test)]
    pub(crate) fn count(&self, counted: impl Fn(&T) -> bool) -> usize {
        self.lock().values().filter(|value| counted(value)).count()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<SegmentId, T>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tantivy::schema::{Schema, STORED, TEXT};
    use tantivy::{doc, Index};

    #[test]
    fn values_of_segments_merged_away_are_forgotten_and_live_ones_kept() {
        let mut schema = Schema::builder();
        let title = schema.add_text_field("title", TEXT | STORED);
        let index = Index::create_in_ram(schema.build());
        let mut writer = index.writer_with_num_threads(1, 15_000_000).unwrap();
        for n in 0..2 {
            writer.add_document(doc!(title => format!("movie {n}"))).unwrap();
            writer.commit().unwrap();
        }
        let reader = index.reader().unwrap();
        let before = reader.searcher();
        let ids: Vec<SegmentId> = before.segment_readers().iter().map(|s| s.segment_id()).collect();
        assert_eq!(ids.len(), 2);
        let kept = PerSegment::<u32>::default();
        assert_eq!(kept.keep(ids[0], 1), 1);
        assert_eq!(kept.keep(ids[0], 2), 1, "the first value kept stays");
        kept.replace(ids[1], 3);
        assert_eq!(kept.cell(ids[1]), 3);
        kept.retain(&before);
        assert_eq!((kept.get(ids[0]), kept.get(ids[1])), (Some(1), Some(3)));

        writer.merge(&ids).wait().unwrap();
        reader.reload().unwrap();
        kept.retain(&reader.searcher());
        assert_eq!((kept.get(ids[0]), kept.get(ids[1])), (None, None));
        assert_eq!(kept.count(|_| true), 0);
    }
}
