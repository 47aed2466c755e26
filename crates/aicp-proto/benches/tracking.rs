//! Cost of forward recognition ([`aicp_proto::tracking`]) per call, with the
//! tracker full: `remember` of a received ~100-word text, and `find_forward`
//! for outgoing texts of ~100 and ~10 000 words, matching nothing, matching
//! one entry, and (the worst case, no early exit) containing 100 entries.
//! Plain `std::time::Instant`, no harness dependency; it measures and prints,
//! asserting only that each case found what it should.
//!
//! Run: `cargo bench -p aicp-proto --bench tracking` (release profile).

use std::hint::black_box;
use std::time::{Duration, Instant};

use aicp_proto::tracking::{ShingleSet, TRACKED_TEXTS, Tracker};

/// Deterministic pseudo-random words (xorshift64) from a 3 000-word
/// vocabulary of made-up syllable words, so runs are comparable.
struct Words {
    state: u64,
    vocabulary: Vec<String>,
}

impl Words {
    fn new() -> Words {
        const SYLLABLES: [&str; 16] = [
            "ka", "ro", "mi", "te", "su", "na", "lo", "pe", "ri", "da", "vo", "shi", "gu", "ne",
            "ba", "tor",
        ];
        let vocabulary = (0..3000u32)
            .map(|i| {
                let mut w = String::new();
                let mut n = i + 16;
                while n > 0 {
                    w.push_str(SYLLABLES[(n % 16) as usize]);
                    n /= 16;
                }
                w
            })
            .collect();
        Words {
            state: 0x9e37_79b9_7f4a_7c15,
            vocabulary,
        }
    }

    fn text(&mut self, words: usize) -> String {
        let mut out = String::new();
        for i in 0..words {
            self.state ^= self.state << 13;
            self.state ^= self.state >> 7;
            self.state ^= self.state << 17;
            out.push_str(&self.vocabulary[(self.state % 3000) as usize]);
            out.push_str(if i % 12 == 11 { ". " } else { " " });
        }
        out
    }
}

/// Median and 99th percentile of `runs` calls of `f`, after a warm-up.
fn measure(runs: usize, mut f: impl FnMut(usize)) -> (Duration, Duration) {
    for i in 0..runs.min(20) {
        f(i);
    }
    let mut times: Vec<Duration> = (0..runs)
        .map(|i| {
            let start = Instant::now();
            f(i);
            start.elapsed()
        })
        .collect();
    times.sort();
    (times[runs / 2], times[runs * 99 / 100])
}

fn row(what: &str, (p50, p99): (Duration, Duration)) {
    println!("| {what} | {:.1} µs | {:.1} µs |", micros(p50), micros(p99));
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn main() {
    let mut words = Words::new();
    let received: Vec<String> = (0..TRACKED_TEXTS).map(|_| words.text(100)).collect();
    let mut tracker = Tracker::new();
    for (i, text) in received.iter().enumerate() {
        assert!(tracker.remember(text, i));
    }
    assert_eq!(tracker.len(), TRACKED_TEXTS);

    println!("tracker full: {TRACKED_TEXTS} texts of 100 words\n");
    println!("| call | p50 | p99 |");
    println!("|---|---|---|");

    // remember: each into a full tracker (evicts the oldest), on a copy so the
    // find_forward cases below still see the original entries.
    let fresh: Vec<String> = (0..2000).map(|_| words.text(100)).collect();
    let mut churn = tracker.clone();
    row(
        "`remember`, 100 words, tracker full",
        measure(fresh.len(), |i| {
            black_box(churn.remember(black_box(&fresh[i]), usize::MAX));
        }),
    );

    let short_none: Vec<String> = (0..2000).map(|_| words.text(100)).collect();
    row(
        "`find_forward`, 100 words, no match",
        measure(short_none.len(), |i| {
            assert_eq!(tracker.find_forward(black_box(&short_none[i])), None);
        }),
    );

    let short_match: Vec<String> = (0..2000)
        .map(|i| format!("FYI: {}", received[i % TRACKED_TEXTS]))
        .collect();
    row(
        "`find_forward`, 100 words, a forward of one entry",
        measure(short_match.len(), |i| {
            let found = tracker.find_forward(black_box(&short_match[i]));
            assert_eq!(found, Some(&(i % TRACKED_TEXTS)));
        }),
    );

    let long_none: Vec<String> = (0..200).map(|_| words.text(10_000)).collect();
    row(
        "`find_forward`, 10 000 words, no match",
        measure(long_none.len(), |i| {
            assert_eq!(tracker.find_forward(black_box(&long_none[i])), None);
        }),
    );

    let long_match: Vec<String> = (0..200)
        .map(|i| {
            let mut t = words.text(5_000);
            t.push_str(&received[i % TRACKED_TEXTS]);
            t.push_str(&words.text(4_900));
            t
        })
        .collect();
    row(
        "`find_forward`, 10 000 words, one entry quoted inside",
        measure(long_match.len(), |i| {
            let found = tracker.find_forward(black_box(&long_match[i]));
            assert_eq!(found, Some(&(i % TRACKED_TEXTS)));
        }),
    );

    // The part of the above that does not depend on the tracker.
    row(
        "of which `ShingleSet::of`, 10 000 words",
        measure(long_none.len(), |i| {
            black_box(ShingleSet::of(black_box(&long_none[i])));
        }),
    );

    // Worst case: 100 entries each fully contained, so none stops early.
    let long_many: Vec<String> = (0..200)
        .map(|i| {
            (0..100)
                .map(|k| received[(i + k) % TRACKED_TEXTS].as_str())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    row(
        "`find_forward`, 10 000 words, 100 entries quoted inside",
        measure(long_many.len(), |i| {
            assert!(tracker.find_forward(black_box(&long_many[i])).is_some());
        }),
    );
}
