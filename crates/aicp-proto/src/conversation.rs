//! When a conversation has ended: a reply that only says thanks, ok or
//! goodbye to a message that only said the same. Both ends refuse it, so two
//! polite assistants do not thank each other for as long as their users leave
//! them running.

/// Most words a courtesy can have; anything longer is taken to say something.
pub const COURTESY_MAX_WORDS: usize = 12;

/// Words that carry no request, answer or information on their own.
const COURTESY_WORDS: &[&str] = &[
    "a",
    "again",
    "all",
    "alright",
    "and",
    "any",
    "anytime",
    "appreciate",
    "appreciated",
    "awesome",
    "best",
    "bye",
    "cheers",
    "cool",
    "do",
    "done",
    "excellent",
    "fine",
    "for",
    "glad",
    "good",
    "got",
    "great",
    "happy",
    "have",
    "help",
    "helped",
    "helping",
    "i",
    "it",
    "k",
    "kind",
    "kindly",
    "likewise",
    "lot",
    "lots",
    "many",
    "me",
    "much",
    "my",
    "nice",
    "no",
    "noted",
    "np",
    "of",
    "ok",
    "okay",
    "perfect",
    "pleasure",
    "problem",
    "problems",
    "regards",
    "same",
    "so",
    "sounds",
    "sure",
    "talk",
    "thank",
    "thanks",
    "thankyou",
    "that",
    "the",
    "thx",
    "to",
    "too",
    "ty",
    "very",
    "was",
    "welcome",
    "well",
    "will",
    "wonderful",
    "you",
    "your",
    "youre",
    "yours",
    "re",
];

/// Whether `text` is only courtesy: at most [`COURTESY_MAX_WORDS`] words, all
/// of them from a small list of thanks and acknowledgements (emoji and
/// punctuation count as nothing). "Thanks!", "You're welcome 😊",
/// "ok, sounds good" are; "ok, merged" and "thanks, but the test fails" are not.
pub fn is_courtesy(text: &str) -> bool {
    let mut words = 0;
    for word in text
        .split(|c: char| !(c.is_alphanumeric() || c == '\'' || c == '\u{2019}'))
        .filter(|w| !w.is_empty())
    {
        words += 1;
        if words > COURTESY_MAX_WORDS {
            return false;
        }
        let word: String = word
            .chars()
            .filter(|c| c.is_alphanumeric())
            .flat_map(char::to_lowercase)
            .collect();
        if !word.is_empty() && !COURTESY_WORDS.contains(&word.as_str()) {
            return false;
        }
    }
    true
}

/// Whether a reply ends nothing new: it and the message it answers are both
/// only courtesy. The first "thanks" is fine; answering it is the loop.
pub fn is_idle_exchange(parent_text: &str, reply_text: &str) -> bool {
    is_courtesy(parent_text) && is_courtesy(reply_text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thanks_and_acknowledgements_are_courtesy() {
        for t in [
            "thanks!",
            "Thank you so much!",
            "You're welcome 😊",
            "you’re welcome, happy to help",
            "ok",
            "OK, sounds good.",
            "Cheers",
            "👍",
            "no problem!",
            "Great, thanks again!",
        ] {
            assert!(is_courtesy(t), "{t:?}");
        }
    }

    #[test]
    fn anything_with_content_is_not() {
        for t in [
            "ok, merged",
            "thanks, but the test fails on line 3",
            "yes",
            "Done: the release notes are in the shared doc",
            "Can you review PR 12?",
            "thanks thanks thanks thanks thanks thanks thanks thanks thanks thanks thanks thanks thanks",
        ] {
            assert!(!is_courtesy(t), "{t:?}");
        }
        assert!(is_idle_exchange("thanks!", "you're welcome!"));
        assert!(!is_idle_exchange("Here is the plan: ...", "thanks!"));
        assert!(!is_idle_exchange("thanks!", "by the way, the build is red"));
    }
}
