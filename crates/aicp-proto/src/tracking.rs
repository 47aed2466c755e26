//! Recognises "the same message, passed around": whether a text about to be
//! sent substantially contains a text received recently, so the bridge (and
//! the hub) can continue that message's AIXP hop count when a model forwards
//! it without naming its id. Pure: text in, a match out; no I/O, no clock.
//!
//! Method, fixed so that the bridge and the hub agree whatever Rust compiled them:
//! 1. [`words`]: lowercase alphanumeric runs; each Han, kana or similar
//!    character is a word of its own (those scripts put no spaces between
//!    words). Punctuation, `>` quote prefixes, quotation marks, whitespace
//!    and case vanish.
//! 2. Shingles: every run of [`SHINGLE_WORDS`] consecutive words, hashed to a
//!    `u64` by hand-written FNV-1a 64 (words, then the shingle over its word
//!    hashes in little-endian) and the MurmurHash3 64-bit finaliser, which
//!    spreads FNV's bits so the smallest hashes are a fair sample. No seed,
//!    no `DefaultHasher` (its output may change between Rust versions).
//! 3. A received text keeps a [`Fingerprint`]: its [`SKETCH_SIZE`] smallest
//!    distinct shingle hashes ("bottom-k"). A text of up to
//!    `SKETCH_SIZE + SHINGLE_WORDS - 1` words keeps all of them, so most chat
//!    messages are compared exactly; a longer one keeps a uniform random
//!    sample of its shingles (the hash decides), and bounded memory.
//! 4. Containment of received `r` in outgoing `o` is the fraction of `r`'s
//!    sketch found in the *full* shingle set of `o` ([`ShingleSet`]). `o` is
//!    the local outgoing text, computed once per call, so its full set costs
//!    nothing to keep. Since the sketch is a uniform sample of `r`'s shingles,
//!    the fraction is an unbiased estimate of |r ∩ o| / |r|, exact when `r`
//!    is short. (Comparing `r`'s bottom-k with `o`'s bottom-k would be wrong
//!    here: when `o` wraps `r` in more text, `o`'s smallest hashes come from
//!    the wrapping.) A verbatim copy has containment 1 exactly, whatever is
//!    added around it, so it matches with no sampling error at all.
//!
//! Limits: a paraphrase is not recognised, nor a text in another Unicode
//! normal form (a decomposed `é` splits its word); characters new to a later
//! Unicode version may lowercase or split differently between builds made with
//! different Rust versions.

use std::collections::VecDeque;

/// Texts with fewer words than this are never fingerprinted, so never match:
/// "ok", "thanks!", "sounds good to me" are said afresh, not passed around.
/// Eight words is about a sentence; at eight, a match still needs five of the
/// six shingles, so a reply that echoes a phrase of a short message does not
/// count as forwarding it.
pub const MIN_WORDS: usize = 8;

/// Words per shingle. Three keeps a short message at several shingles and a
/// one-word edit costs at most three of them (a forward with a few words
/// changed still matches), while a three-word phrase is already specific
/// enough that unrelated messages on one topic share few.
pub const SHINGLE_WORDS: usize = 3;

/// Shingle hashes kept per received text (the bottom-k sketch). 128 keeps
/// every shingle of a text up to 130 words, so ordinary messages are compared
/// exactly. For a longer text the estimate's standard deviation is at most
/// √(c(1−c)/128): ≤ 0.027 around a true containment c of 0.9 (a forward with
/// edits misses [`CONTAINMENT`] with probability ≈ 10⁻⁴) and ≤ 0.043 around
/// 0.6 (a large part quoted, not the whole, passes ≈ 10⁻⁶). 64 would halve
/// memory and time but give ≈ 0.4 % misses of edited forwards.
pub const SKETCH_SIZE: usize = 128;

/// The fraction of a received text's shingles an outgoing text must contain
/// to be its forward. A verbatim copy inside anything scores 1; 0.8 also
/// allows a few words changed (each costs up to [`SHINGLE_WORDS`] shingles:
/// about one word in fifteen), while a reply quoting one line of a
/// ten-line message scores about 0.1.
pub const CONTAINMENT: f64 = 0.8;

/// Received texts a [`Tracker`] remembers, the oldest forgotten first. A
/// forward is usually of something received minutes ago; 256 covers a busy
/// session's inbox. Memory: at most `TRACKED_TEXTS × SKETCH_SIZE × 8` bytes =
/// 256 KiB of hashes (a text under 130 words keeps fewer), plus 24 bytes and
/// the caller's `T` per entry. Time: an outgoing text is compared with every
/// entry, and an unrelated one stops after a fifth of its sketch missed.
pub const TRACKED_TEXTS: usize = 256;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

fn fnv1a(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

/// MurmurHash3's 64-bit finaliser: a bijection that makes every output bit
/// depend on every input bit, so "the smallest hashes" is a fair sample.
fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    h
}

/// Scripts written without spaces between words: each character is a word.
fn stands_alone(c: char) -> bool {
    matches!(c,
        '\u{3040}'..='\u{30FF}'       // Hiragana, Katakana
        | '\u{31F0}'..='\u{31FF}'     // Katakana phonetic extensions
        | '\u{3400}'..='\u{4DBF}'     // CJK extension A
        | '\u{4E00}'..='\u{9FFF}'     // CJK unified ideographs
        | '\u{F900}'..='\u{FAFF}'     // CJK compatibility ideographs
        | '\u{0E00}'..='\u{0EFF}'     // Thai, Lao
        | '\u{1000}'..='\u{109F}'     // Myanmar
        | '\u{1780}'..='\u{17FF}'     // Khmer
        | '\u{20000}'..='\u{3FFFF}' // CJK extensions B and later
    )
}

/// Calls `word` with each normalised word of `text`, as UTF-8 bytes in a
/// reused buffer (no allocation per word).
fn each_word(text: &str, mut word: impl FnMut(&[u8])) {
    let mut buf = String::new();
    let mut flush = |buf: &mut String| {
        if !buf.is_empty() {
            word(buf.as_bytes());
            buf.clear();
        }
    };
    for c in text.chars() {
        // ASCII first: most text, and std's Unicode tables are the slow path.
        if c.is_ascii() {
            if c.is_ascii_alphanumeric() {
                buf.push(c.to_ascii_lowercase());
            } else {
                flush(&mut buf);
            }
        } else if stands_alone(c) {
            flush(&mut buf);
            buf.push(c);
            flush(&mut buf);
        } else if c.is_alphanumeric() {
            buf.extend(c.to_lowercase());
        } else {
            flush(&mut buf);
        }
    }
    flush(&mut buf);
}

/// The normalised words of `text`: lowercase runs of alphanumeric characters,
/// each character of a script written without spaces (Han, kana, Thai, …) a
/// word of its own. What the fingerprints are made of.
pub fn words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    each_word(text, |w| {
        out.push(String::from_utf8(w.to_vec()).expect("built from chars"))
    });
    out
}

/// The distinct shingle hashes of `text`, sorted, and its word count.
fn shingle_hashes(text: &str) -> (Vec<u64>, usize) {
    let mut word_hashes = Vec::new();
    each_word(text, |w| word_hashes.push(fnv1a(FNV_OFFSET, w)));
    let mut shingles: Vec<u64> = word_hashes
        .windows(SHINGLE_WORDS)
        .map(|ws| {
            let h = ws
                .iter()
                .fold(FNV_OFFSET, |h, w| fnv1a(h, &w.to_le_bytes()));
            fmix64(h)
        })
        .collect();
    shingles.sort_unstable();
    shingles.dedup();
    (shingles, word_hashes.len())
}

/// What is remembered of a received text: its bottom-k sketch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    /// The [`SKETCH_SIZE`] smallest distinct shingle hashes, ascending.
    sketch: Vec<u64>,
}

impl Fingerprint {
    /// The fingerprint of a received text; `None` when it has fewer than
    /// [`MIN_WORDS`] words (it will never be recognised as forwarded).
    pub fn of(text: &str) -> Option<Fingerprint> {
        let (mut sketch, words) = shingle_hashes(text);
        if words < MIN_WORDS {
            return None;
        }
        sketch.truncate(SKETCH_SIZE);
        sketch.shrink_to_fit();
        Some(Fingerprint { sketch })
    }

    /// The sketch: at most [`SKETCH_SIZE`] shingle hashes, ascending.
    pub fn sketch(&self) -> &[u64] {
        &self.sketch
    }
}

/// Every distinct shingle hash of an outgoing text, sorted: computed once per
/// outgoing call and compared with each remembered [`Fingerprint`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShingleSet {
    hashes: Vec<u64>,
    /// One bit per slot, set where some hash's top `64 - filter_shift` bits
    /// point: about eight slots per hash, so a hash not in the text is ruled
    /// out by one bit test ~88 % of the time, and only the rest pay a binary
    /// search. Not a hash table: no input makes it slower than the search alone.
    filter: Vec<u64>,
    filter_shift: u32,
    words: usize,
}

impl ShingleSet {
    pub fn of(text: &str) -> ShingleSet {
        let (hashes, words) = shingle_hashes(text);
        let slots = (hashes.len() * 8).next_power_of_two().max(64);
        let filter_shift = 64 - slots.trailing_zeros();
        let mut filter = vec![0u64; slots / 64];
        for &h in &hashes {
            let slot = (h >> filter_shift) as usize;
            filter[slot / 64] |= 1 << (slot % 64);
        }
        ShingleSet {
            hashes,
            filter,
            filter_shift,
            words,
        }
    }

    fn contains(&self, h: u64) -> bool {
        let slot = (h >> self.filter_shift) as usize;
        self.filter[slot / 64] & (1 << (slot % 64)) != 0 && self.hashes.binary_search(&h).is_ok()
    }

    /// `received`'s containment in this text if it is at least `threshold`,
    /// else `None`; stops at the first miss that puts `threshold` out of
    /// reach, so an unrelated text costs about a fifth of its sketch.
    fn containment_at_least(&self, received: &Fingerprint, threshold: f64) -> Option<f64> {
        let total = received.sketch.len();
        if total == 0 || self.words < MIN_WORDS {
            return None;
        }
        let fraction = |misses: usize| (total - misses) as f64 / total as f64;
        let mut misses = 0;
        for &h in &received.sketch {
            if !self.contains(h) {
                misses += 1;
                if fraction(misses) < threshold {
                    return None;
                }
            }
        }
        Some(fraction(misses))
    }
}

/// The estimated fraction of `received`'s shingles that `outgoing` contains
/// (see the module docs), in 0..=1; 0 for a text too short to compare.
pub fn containment(received: &Fingerprint, outgoing: &ShingleSet) -> f64 {
    outgoing.containment_at_least(received, 0.0).unwrap_or(0.0)
}

/// Whether `outgoing` is a forward of `received`: `received` has at least
/// [`MIN_WORDS`] words and `outgoing` contains at least [`CONTAINMENT`] of it.
pub fn is_forward(outgoing: &str, received: &str) -> bool {
    Fingerprint::of(received).is_some_and(|r| {
        ShingleSet::of(outgoing)
            .containment_at_least(&r, CONTAINMENT)
            .is_some()
    })
}

/// The fingerprints of the last received texts, each with what the caller
/// attached (an AIXP envelope, say), bounded to a fixed number of texts.
#[derive(Debug, Clone)]
pub struct Tracker<T> {
    /// Oldest at the front; the oldest is forgotten when full.
    entries: VecDeque<(Fingerprint, T)>,
    /// The bound: memory is at most `capacity × SKETCH_SIZE × 8` bytes of hashes.
    capacity: usize,
}

impl<T> Default for Tracker<T> {
    fn default() -> Self {
        Tracker::new()
    }
}

impl<T> Tracker<T> {
    /// A tracker of the last [`TRACKED_TEXTS`] texts.
    pub fn new() -> Tracker<T> {
        Tracker::with_capacity(TRACKED_TEXTS)
    }

    /// A tracker of the last `capacity` texts (at least one).
    pub fn with_capacity(capacity: usize) -> Tracker<T> {
        let capacity = capacity.max(1);
        Tracker {
            entries: VecDeque::with_capacity(capacity),
            capacity,
        }
    }

    /// Remembers a received text with `value`, forgetting the oldest when
    /// full. A text seen before replaces its earlier entry (a message going
    /// round a loop fills one slot, not all). Returns false, remembering
    /// nothing, for a text shorter than [`MIN_WORDS`].
    pub fn remember(&mut self, text: &str, value: T) -> bool {
        let Some(fingerprint) = Fingerprint::of(text) else {
            return false;
        };
        if let Some(i) = self.entries.iter().position(|(f, _)| *f == fingerprint) {
            self.entries.remove(i);
        } else if self.entries.len() == self.capacity {
            self.entries.pop_front();
        }
        self.entries.push_back((fingerprint, value));
        true
    }

    /// The remembered text `outgoing` forwards, if any: the one with the
    /// highest containment of at least [`CONTAINMENT`], the most recent on a tie.
    pub fn find_forward(&self, outgoing: &str) -> Option<&T> {
        self.find_forward_scored(outgoing).map(|(_, t)| t)
    }

    /// [`Tracker::find_forward`] with the containment it found (for a log line).
    pub fn find_forward_scored(&self, outgoing: &str) -> Option<(f64, &T)> {
        if self.entries.is_empty() {
            return None;
        }
        let set = ShingleSet::of(outgoing);
        let mut best: Option<(f64, &T)> = None;
        // Newest first, replaced only by a strictly better match: ties keep the newest.
        for (fingerprint, value) in self.entries.iter().rev() {
            let floor = best.map_or(CONTAINMENT, |(c, _)| c);
            if let Some(c) = set.containment_at_least(fingerprint, floor)
                && best.is_none_or(|(b, _)| c > b)
            {
                best = Some((c, value));
            }
        }
        best
    }

    /// Every remembered text `outgoing` forwards (containment at least
    /// [`CONTAINMENT`]), newest first: when one message went round with
    /// different wrappings, the caller picks (say, the furthest along).
    pub fn forwards_of(&self, outgoing: &str) -> Vec<&T> {
        self.forwards_at(outgoing, CONTAINMENT)
    }

    /// [`Tracker::forwards_of`] with another threshold than [`CONTAINMENT`]
    /// (1.0: only verbatim copies); a threshold of 0 or less finds nothing.
    pub fn forwards_at(&self, outgoing: &str, threshold: f64) -> Vec<&T> {
        if self.entries.is_empty() || threshold <= 0.0 {
            return Vec::new();
        }
        let set = ShingleSet::of(outgoing);
        self.entries
            .iter()
            .rev()
            .filter(|(fingerprint, _)| set.containment_at_least(fingerprint, threshold).is_some())
            .map(|(_, value)| value)
            .collect()
    }

    /// Keeps only the entries whose value passes `keep` (e.g. drop those whose
    /// envelope has expired; the tracker has no clock of its own).
    pub fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        self.entries.retain(|(_, t)| keep(t));
    }

    /// How many texts are remembered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAN: &str = "Please review the release plan for version 2.4 and pass it on to \
        the rest of the team before Friday so that everyone knows the freeze date.";

    /// Ten lines of a status report, each about something different.
    const REPORT: &str = "1. The build server was migrated to the new cluster on Monday.\n\
        2. Nightly tests are green again after the flaky network fix.\n\
        3. Documentation for the plugin API still needs an owner.\n\
        4. The security audit found two medium issues in session handling.\n\
        5. Marketing wants screenshots of the new dashboard by Thursday.\n\
        6. Support tickets about login failures dropped by half this week.\n\
        7. We agreed to drop Windows 7 support in the next major release.\n\
        8. The database upgrade is scheduled for the weekend of the 14th.\n\
        9. Two new engineers join the platform team next month.\n\
        10. Budget review with finance moved to Wednesday afternoon.";

    fn score(outgoing: &str, received: &str) -> f64 {
        containment(
            &Fingerprint::of(received).expect("long enough"),
            &ShingleSet::of(outgoing),
        )
    }

    #[test]
    fn words_ignore_case_punctuation_and_quoting() {
        assert_eq!(
            words("> \"Hello,\"  WORLD!\n> it's 2.4 — «ok»"),
            ["hello", "world", "it", "s", "2", "4", "ok"]
        );
        assert_eq!(words("Straße ÜBER Ωμέγα"), ["straße", "über", "ωμέγα"]);
        assert_eq!(words("発表は金曜"), ["発", "表", "は", "金", "曜"]);
    }

    #[test]
    fn hashes_are_fixed_across_builds() {
        // FNV-1a 64 test vectors: the bridge and the hub must agree forever.
        assert_eq!(fnv1a(FNV_OFFSET, b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(FNV_OFFSET, b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(FNV_OFFSET, b"foobar"), 0x8594_4171_f739_67e8);
        // The whole pipeline, pinned: a change here breaks a bridge and a hub of
        // different versions, so it must be deliberate.
        // GOLDEN was computed by a separate Python implementation of the same steps.
        const GOLDEN: u64 = 0x9b9c_17e9_f1b2_f5ed;
        let (one, words) = shingle_hashes("One, two; THREE!");
        assert_eq!((one, words), (vec![GOLDEN], 3));
        let f = Fingerprint::of("one two three four five six seven eight").unwrap();
        assert_eq!(f.sketch().len(), 6);
        assert!(f.sketch().contains(&GOLDEN));
    }

    #[test]
    fn identical_text_matches() {
        assert!(is_forward(PLAN, PLAN));
        assert_eq!(score(PLAN, PLAN), 1.0);
    }

    #[test]
    fn case_whitespace_and_punctuation_do_not_matter() {
        let changed = "please   REVIEW the release plan, for version 2-4; and pass it on \
            to the rest of the team\n\nbefore friday ... so that everyone knows the FREEZE date";
        assert_eq!(score(changed, PLAN), 1.0);
    }

    #[test]
    fn a_prefix_or_suffix_added_still_matches() {
        assert_eq!(score(&format!("FYI: {PLAN}"), PLAN), 1.0);
        let wrapped = format!(
            "Forwarding this from Alice, who asked me to share it: \"{PLAN}\" \
             Let me know if you have questions, I am around all afternoon."
        );
        assert_eq!(score(&wrapped, PLAN), 1.0);
        assert!(is_forward(&format!("{PLAN}\n\nPlease see above."), PLAN));
    }

    #[test]
    fn quoted_inside_a_longer_message_matches() {
        let quoted: String = REPORT.lines().map(|l| format!("> {l}\n")).collect();
        let reply = format!(
            "Hi Bob,\n\nAlice sent the weekly status below; I added my notes at the end.\n\n\
             {quoted}\nMy notes: the audit issues are already fixed on main, and I can \
             take the plugin documentation if nobody else wants it.\n\nCheers, Carol"
        );
        assert_eq!(score(&reply, REPORT), 1.0);
    }

    #[test]
    fn a_few_words_edited_still_match_up_to_one_in_fifteen() {
        // 28 words, 26 shingles: one word changed costs 3 of them.
        let c = score(&PLAN.replace("Friday", "Thursday"), PLAN);
        assert!((CONTAINMENT..1.0).contains(&c), "{c}");
        // Two changed in 28 words is past the line (20 of 26): a rewrite, not a forward.
        let twice = PLAN
            .replace("Friday", "Thursday")
            .replace("everyone", "everybody");
        assert!(!is_forward(&twice, PLAN), "{}", score(&twice, PLAN));
        // 118 words: five words changed, far apart, still a forward.
        let edited = REPORT
            .replace("Monday", "Tuesday")
            .replace("owner", "author")
            .replace("Thursday", "Friday")
            .replace("weekend", "night")
            .replace("Wednesday", "Monday");
        let c = score(&edited, REPORT);
        assert!((CONTAINMENT..1.0).contains(&c), "{c}");
    }

    #[test]
    fn a_reply_quoting_one_line_does_not_match() {
        let line = REPORT.lines().nth(3).unwrap();
        let reply = format!(
            "> {line}\n\nThanks for the summary. Which two issues were they, and \
             who is fixing them? I would like to check before we ship."
        );
        let c = score(&reply, REPORT);
        assert!(c < 0.2, "{c}");
        assert!(!is_forward(&reply, REPORT));
        // Even half the report is not the report.
        let half: String = REPORT.lines().take(5).collect::<Vec<_>>().join("\n");
        assert!(!is_forward(&half, REPORT), "{}", score(&half, REPORT));
    }

    #[test]
    fn unrelated_texts_on_the_same_topic_do_not_match() {
        let others = [
            "I read the release plan for version 2.4 and I think the freeze date \
             before Friday is too early for the rest of the team.",
            "Sure, I will review the release plan and pass my comments on to \
             the team before the freeze.",
            "Can you send me the release plan? I want to know the freeze date \
             for version 2.4 before I plan my Friday.",
        ];
        for other in others {
            let c = score(other, PLAN);
            assert!(c < 0.5, "{c}: {other}");
            assert!(!is_forward(other, PLAN));
            assert!(!is_forward(PLAN, other));
        }
    }

    #[test]
    fn short_texts_never_match_even_identical() {
        for short in [
            "ok",
            "thanks!",
            "you're welcome",
            "Sounds good to me, thanks!",
            "Yes, I will do that later today.",
        ] {
            assert!(words(short).len() < MIN_WORDS);
            assert_eq!(Fingerprint::of(short), None);
            assert!(!is_forward(short, short), "{short}");
            let mut tracker = Tracker::new();
            assert!(!tracker.remember(short, ()));
            assert_eq!(tracker.find_forward(short), None);
        }
    }

    #[test]
    fn unicode_words_match_and_differ() {
        let ru =
            "Пожалуйста, посмотрите план релиза и передайте его дальше всей команде до пятницы.";
        assert!(is_forward(&format!("К сведению: «{ru}»"), ru));
        assert!(!is_forward(
            "Я посмотрел план релиза, но пятница для команды слишком рано, давайте обсудим.",
            ru
        ));
        let ja = "リリース計画を確認して、金曜日までにチーム全員に共有してください。";
        assert!(words(ja).len() >= MIN_WORDS);
        assert!(is_forward(
            &format!("参考までに：{ja}よろしくお願いします。"),
            ja
        ));
        assert!(!is_forward("金曜日の会議の資料を共有してください。", ja));
    }

    #[test]
    fn long_received_texts_are_sampled_and_still_match() {
        // Six hundred distinct words: far more shingles than the sketch keeps.
        let long: String = (0..600).map(|i| format!("w{i} ")).collect();
        let f = Fingerprint::of(&long).unwrap();
        assert_eq!(f.sketch().len(), SKETCH_SIZE);
        assert_eq!(score(&format!("FYI {long} bye"), &long), 1.0);
        // The first half contains about half: the sample says so within its error.
        let half: String = (0..300).map(|i| format!("w{i} ")).collect();
        let c = score(&half, &long);
        assert!((0.35..0.65).contains(&c), "{c}");
        assert!(!is_forward(&half, &long));
    }

    #[test]
    fn tracker_returns_the_best_match_and_the_newest_on_a_tie() {
        let mut tracker = Tracker::new();
        assert!(tracker.remember(PLAN, "plan"));
        assert!(tracker.remember(REPORT, "report"));
        let line = REPORT.lines().next().unwrap();
        assert!(tracker.remember(&format!("{line} Nothing else to report today."), "line"));
        assert_eq!(tracker.find_forward(&format!("FYI: {PLAN}")), Some(&"plan"));
        assert_eq!(
            tracker.find_forward(&format!("> {REPORT}")),
            Some(&"report")
        );
        assert_eq!(
            tracker.find_forward("Nothing to do with any of it, really, honestly."),
            None
        );

        // The plan edited a little matches the plan at < 1; the edited text
        // itself, remembered later, matches at 1 and wins.
        let edited = PLAN.replace("Friday", "Thursday");
        assert_eq!(tracker.find_forward(&edited), Some(&"plan"));
        tracker.remember(&edited, "edited");
        assert_eq!(tracker.find_forward_scored(&edited), Some((1.0, &"edited")));
        // A message containing both plan and edited plan: both score 1, the newest wins.
        assert_eq!(
            tracker.find_forward(&format!("{PLAN} {edited}")),
            Some(&"edited")
        );
        // The same text again replaces its entry: the newest value answers.
        let before = tracker.len();
        assert!(tracker.remember(&PLAN.to_uppercase(), "plan again"));
        assert_eq!(tracker.len(), before);
        assert_eq!(tracker.find_forward(PLAN), Some(&"plan again"));

        tracker.retain(|v| *v != "plan again");
        assert_eq!(tracker.find_forward(PLAN), Some(&"edited"));
    }

    #[test]
    fn every_wrapping_of_one_text_is_a_forward_of_it() {
        let plan = "Please review the release plan for version two and pass it on to whoever owns the docs";
        let mut t = Tracker::new();
        t.remember(plan, 1);
        t.remember(&format!("FYI: {plan}"), 2);
        t.remember(
            "Lunch is at noon on Friday in the usual place near the office, see you there",
            3,
        );
        assert_eq!(t.forwards_of(&format!("> {plan}")), [&2, &1]);
        assert!(t.forwards_of("ok").is_empty());
    }

    #[test]
    fn tracker_forgets_beyond_its_bound() {
        let text =
            |i: usize| format!("message number {i} about topic {i} with some more words {i}");
        let mut tracker = Tracker::new();
        for i in 0..TRACKED_TEXTS + 10 {
            assert!(tracker.remember(&text(i), i));
        }
        assert_eq!(tracker.len(), TRACKED_TEXTS);
        for i in 0..10 {
            assert_eq!(
                tracker.find_forward(&text(i)),
                None,
                "{i} should be forgotten"
            );
        }
        for i in 10..TRACKED_TEXTS + 10 {
            assert_eq!(tracker.find_forward(&format!("fwd: {}", text(i))), Some(&i));
        }

        let mut small = Tracker::with_capacity(2);
        small.remember(PLAN, 1);
        small.remember(REPORT, 2);
        small.remember(&text(0), 3);
        assert_eq!((small.len(), small.find_forward(PLAN)), (2, None));
        assert_eq!(small.find_forward(REPORT), Some(&2));
    }
}
