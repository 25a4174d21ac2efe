//! A response cache for deterministic requests: greedy decoding with the same
//! model version, prompt and parameters gives the same tokens, so they are kept
//! (least recently used first out) within a byte bound.

use std::sync::Mutex;

use lru::LruCache;

use crate::engine::FinishReason;

/// What makes a greedy request's answer: every input of the decoding.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    /// Model name.
    pub model: String,
    /// Version.
    pub version: u64,
    /// Prompt token ids.
    pub prompt: Vec<u32>,
    /// Tokens to generate at most.
    pub max_new: usize,
    /// Stop tokens.
    pub stops: Vec<u32>,
    /// Whether EOS was ignored.
    pub ignore_eos: bool,
    /// Repetition penalty, as bits.
    pub repetition_penalty: u32,
}

impl CacheKey {
    fn bytes(&self) -> usize {
        self.model.len() + 4 * (self.prompt.len() + self.stops.len()) + 64
    }
}

/// A cached answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Cached {
    /// Generated tokens.
    pub tokens: Vec<u32>,
    /// Why generation stopped.
    pub finish: FinishReason,
}

/// The cache (thread-safe).
#[derive(Debug)]
pub struct ResponseCache {
    inner: Mutex<Inner>,
    limit: usize,
}

#[derive(Debug)]
struct Inner {
    map: LruCache<CacheKey, Cached>,
    bytes: usize,
    hits: u64,
    misses: u64,
}

impl ResponseCache {
    /// A cache of at most `limit_bytes` (keys and values); `0` disables it.
    pub fn new(limit_bytes: usize) -> ResponseCache {
        ResponseCache {
            inner: Mutex::new(Inner {
                map: LruCache::unbounded(),
                bytes: 0,
                hits: 0,
                misses: 0,
            }),
            limit: limit_bytes,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cached answer, if any.
    pub fn get(&self, key: &CacheKey) -> Option<Cached> {
        if self.limit == 0 {
            return None;
        }
        let mut g = self.lock();
        let hit = g.map.get(key).cloned();
        if hit.is_some() {
            g.hits += 1;
        } else {
            g.misses += 1;
        }
        hit
    }

    /// Stores an answer, evicting the least recently used until it fits.
    pub fn put(&self, key: CacheKey, value: Cached) {
        let size = key.bytes() + 4 * value.tokens.len();
        if self.limit == 0 || size > self.limit {
            return;
        }
        let mut g = self.lock();
        if let Some(old) = g.map.pop(&key) {
            g.bytes -= key.bytes() + 4 * old.tokens.len();
        }
        while g.bytes + size > self.limit {
            match g.map.pop_lru() {
                Some((k, v)) => g.bytes -= k.bytes() + 4 * v.tokens.len(),
                None => break,
            }
        }
        g.bytes += size;
        g.map.put(key, value);
    }

    /// (entries, bytes, hits, misses).
    pub fn stats(&self) -> (usize, usize, u64, u64) {
        let g = self.lock();
        (g.map.len(), g.bytes, g.hits, g.misses)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u32) -> CacheKey {
        CacheKey {
            model: "m".into(),
            version: 1,
            prompt: vec![i; 10],
            max_new: 4,
            stops: vec![],
            ignore_eos: false,
            repetition_penalty: 1.0f32.to_bits(),
        }
    }

    #[test]
    fn bounded_and_least_recently_used_first_out() {
        let v = Cached {
            tokens: vec![1, 2, 3, 4],
            finish: FinishReason::Length,
        };
        let one = key(0).bytes() + 16;
        let c = ResponseCache::new(3 * one);
        for i in 0..3 {
            c.put(key(i), v.clone());
        }
        assert!(c.get(&key(0)).is_some());
        c.put(key(3), v.clone());
        assert!(c.get(&key(1)).is_none(), "the least recently used goes");
        assert!(c.get(&key(0)).is_some() && c.get(&key(3)).is_some());
        let (n, bytes, _, _) = c.stats();
        assert_eq!((n, bytes), (3, 3 * one));
        assert!(ResponseCache::new(0).get(&key(0)).is_none());
    }
}
