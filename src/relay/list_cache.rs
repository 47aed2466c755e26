//! The list cache: identical `*/list` requests are answered from the last
//! answer for a short while (`list_cache`, docs/limits.md), so a host that
//! floods `tools/list` does not flood the hub. Time is passed in.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

/// Answers identical `*/list` requests from the last answer for a short
/// while (`list_cache`), so a host that floods `tools/list` does not flood the hub.
#[derive(Debug, Default)]
pub struct ListCache {
    ttl: Duration,
    /// Request key (method and params) to when the answer came and its `result` text.
    entries: HashMap<String, (Instant, String)>,
}

impl ListCache {
    pub fn new(ttl: Duration) -> ListCache {
        ListCache {
            ttl,
            entries: HashMap::new(),
        }
    }

    pub fn enabled(&self) -> bool {
        !self.ttl.is_zero()
    }

    pub fn get(&self, key: &str, now: Instant) -> Option<&str> {
        let (at, result) = self.entries.get(key)?;
        (now.saturating_duration_since(*at) < self.ttl).then_some(result.as_str())
    }

    pub fn put(&mut self, key: String, result: String, now: Instant) {
        if self.enabled() {
            let ttl = self.ttl;
            self.entries
                .retain(|_, (at, _)| now.saturating_duration_since(*at) < ttl);
            self.entries.insert(key, (now, result));
        }
    }

    /// The hub said a list changed, or the connection changed: forget everything.
    pub fn clear(&mut self) {
        self.entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_cache_serves_within_its_window_only() {
        let t0 = Instant::now();
        let mut cache = ListCache::new(Duration::from_secs(2));
        assert!(cache.get("tools/list", t0).is_none());
        cache.put("tools/list".into(), "{\"tools\":[]}".into(), t0);
        assert_eq!(
            cache.get("tools/list", t0 + Duration::from_millis(1999)),
            Some("{\"tools\":[]}")
        );
        assert!(
            cache
                .get("tools/list", t0 + Duration::from_secs(2))
                .is_none()
        );
        assert!(cache.get("prompts/list", t0).is_none());
        cache.clear();
        assert!(cache.get("tools/list", t0).is_none());
        let mut off = ListCache::new(Duration::ZERO);
        off.put("tools/list".into(), "{}".into(), t0);
        assert!(off.get("tools/list", t0).is_none());
    }
}
