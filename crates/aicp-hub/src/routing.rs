//! Who gets the work: which of the capabilities people actually declared a
//! request mentions (whole words, plus a small synonym table), the best
//! recipient among them (online before offline, load spread on ties), and how
//! `orchestrate_collaboration` splits a task into subtasks and assigns each.
//! Pure functions over plain data, unit-tested; no agent kind is ever invented.

/// One candidate recipient: an identity, what it declared, and whether it is connected now.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Candidate {
    pub identity: String,
    pub capabilities: Vec<String>,
    /// Connected now; an offline candidate is a known identity whose inbox keeps the message.
    pub online: bool,
}

/// Phrases in a request that mean a capability, keyed by the capability's
/// normalised name (lower case, words joined by `-`). Kept small on purpose:
/// each entry is a word a person asking for that help would plausibly use.
/// Matching is on whole words (a phrase must appear as consecutive words).
pub(crate) const SYNONYMS: &[(&str, &[&str])] = &[
    (
        "ux",
        &[
            "user experience",
            "usability",
            "interface",
            "wireframe",
            "onboarding",
            "accessibility",
        ],
    ),
    ("design", &["mockup", "layout", "visual", "redesign"]),
    (
        "code-review",
        &["review code", "pull request", "pr", "diff", "patch"],
    ),
    ("rust", &["cargo", "crate", "borrow checker"]),
    (
        "writing",
        &[
            "write",
            "draft",
            "copy",
            "blog",
            "docs",
            "announcement",
            "proofread",
        ],
    ),
    (
        "analysis",
        &["analyse", "analyze", "data", "metrics", "report"],
    ),
];

/// The words of `text`: lower case, split on anything that is not a letter or
/// digit (so `-`, `_`, spaces and punctuation all separate), a plural `s`
/// dropped from words longer than three letters (`crates` is `crate`, `docs` stays).
pub(crate) fn words(text: &str) -> Vec<String> {
    text.to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| match w.strip_suffix('s') {
            Some(stem) if w.chars().count() > 4 && !stem.ends_with('s') => stem.to_owned(),
            _ => w.to_owned(),
        })
        .collect()
}

/// A capability's canonical name: its words joined by `-` (`Code_Review` is `code-review`).
pub(crate) fn normalise(capability: &str) -> String {
    words(capability).join("-")
}

/// Whether `phrase` (already split into words) occurs as consecutive words of `text`.
fn contains_phrase(text: &[String], phrase: &[String]) -> bool {
    !phrase.is_empty() && text.windows(phrase.len()).any(|w| w == phrase)
}

/// Whether a request (its words) asks for `capability`: the capability's words
/// as consecutive words, all of a multi-word capability's words anywhere
/// (`review the code` asks for `code-review`), or a synonym phrase.
pub(crate) fn mentions(request: &[String], capability: &str) -> bool {
    let cap = words(capability);
    if cap.is_empty() {
        return false;
    }
    if contains_phrase(request, &cap) || (cap.len() > 1 && cap.iter().all(|w| request.contains(w)))
    {
        return true;
    }
    let key = cap.join("-");
    SYNONYMS
        .iter()
        .filter(|(c, _)| *c == key)
        .flat_map(|(_, phrases)| phrases.iter())
        .any(|p| contains_phrase(request, &words(p)))
}

/// The candidate's declared capabilities a request serves: those the request
/// mentions or, when the caller named `targets`, those equal to a target
/// (compared by [`normalise`]d name).
pub(crate) fn matched(candidate: &Candidate, request: &str, targets: &[String]) -> Vec<String> {
    if targets.is_empty() {
        let req = words(request);
        candidate
            .capabilities
            .iter()
            .filter(|c| mentions(&req, c))
            .cloned()
            .collect()
    } else {
        let wanted: Vec<String> = targets.iter().map(|t| normalise(t)).collect();
        candidate
            .capabilities
            .iter()
            .filter(|c| wanted.contains(&normalise(c)))
            .cloned()
            .collect()
    }
}

/// The candidate who should take a request, with the capabilities that made
/// it fit. Only a candidate matching at least one capability is chosen;
/// online ones before offline ones, then more matched capabilities, then
/// the lower `load` (work already routed to them), then the name, so the
/// choice is deterministic and equal matches take turns.
pub(crate) fn best_match<'a>(
    candidates: &'a [Candidate],
    request: &str,
    targets: &[String],
    load: impl Fn(&str) -> usize,
) -> Option<(&'a Candidate, Vec<String>)> {
    candidates
        .iter()
        .map(|c| (c, matched(c, request, targets)))
        .filter(|(_, m)| !m.is_empty())
        .min_by(|(a, ma), (b, mb)| {
            b.online
                .cmp(&a.online)
                .then(mb.len().cmp(&ma.len()))
                .then_with(|| load(&a.identity).cmp(&load(&b.identity)))
                .then_with(|| a.identity.cmp(&b.identity))
        })
}

/// A list item's marker: `-`, `*` or `•`, or digits followed by `.` or `)`,
/// always followed by whitespace. Returns the text after it.
/// `2FA: add TOTP` and `404 page` carry no marker.
fn strip_marker(line: &str) -> Option<&str> {
    let line = line.trim_start();
    let rest = if let Some(r) = line.strip_prefix(['-', '*', '•']) {
        r
    } else {
        let digits = line.len() - line.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits == 0 {
            return None;
        }
        line[digits..].strip_prefix(['.', ')'])?
    };
    rest.starts_with(char::is_whitespace)
        .then(|| rest.trim())
        .filter(|r| !r.is_empty())
}

/// Splits a task into subtasks. When any line is a list item (see
/// [`strip_marker`]) each item is one subtask; lines before the first item are a
/// heading (dropped: the task is quoted in every message), and unmarked lines
/// after an item continue it. Without list items the whole task is one
/// subtask, however many sentences or `;` it holds: prose is one piece of work,
/// and inventing analyse/do/review phases would send people work that does not
/// exist yet. Never empty for a non-empty task.
pub(crate) fn split_task(task: &str) -> Vec<String> {
    let task = task.trim();
    if !task.lines().any(|l| strip_marker(l).is_some()) {
        return if task.is_empty() {
            Vec::new()
        } else {
            vec![task.to_owned()]
        };
    }
    let mut items: Vec<String> = Vec::new();
    for line in task.lines() {
        if let Some(item) = strip_marker(line) {
            items.push(item.to_owned());
        } else if let (Some(last), l) = (items.last_mut(), line.trim())
            && !l.is_empty()
        {
            last.push(' ');
            last.push_str(l);
        }
    }
    items
}

/// One subtask's assignee and the capabilities that made them fit (empty when
/// nobody matched and the work went to the least loaded instead).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Assignment {
    pub identity: String,
    pub matched: Vec<String>,
}

/// Assigns every subtask to one of `agents` (never dropping one): the best
/// capability match as [`best_match`] ranks it, where load counts `load` (work
/// routed before) plus what this plan already gave them; when nobody matches,
/// the least loaded, online first. None only when `agents` is empty.
pub(crate) fn assign(
    subtasks: &[String],
    agents: &[Candidate],
    load: impl Fn(&str) -> usize,
) -> Vec<Option<Assignment>> {
    let mut given: std::collections::HashMap<String, usize> = Default::default();
    let mut out = Vec::with_capacity(subtasks.len());
    for st in subtasks {
        let total = |id: &str| load(id) + given.get(id).copied().unwrap_or(0);
        let pick = match best_match(agents, st, &[], total) {
            Some((c, m)) => Some(Assignment {
                identity: c.identity.clone(),
                matched: m,
            }),
            None => agents
                .iter()
                .min_by(|a, b| {
                    b.online
                        .cmp(&a.online)
                        .then_with(|| total(&a.identity).cmp(&total(&b.identity)))
                        .then_with(|| a.identity.cmp(&b.identity))
                })
                .map(|c| Assignment {
                    identity: c.identity.clone(),
                    matched: Vec::new(),
                }),
        };
        if let Some(p) = &pick {
            *given.entry(p.identity.clone()).or_default() += 1;
        }
        out.push(pick);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(id: &str, caps: &[&str], online: bool) -> Candidate {
        Candidate {
            identity: id.into(),
            capabilities: caps.iter().map(|c| c.to_string()).collect(),
            online,
        }
    }

    fn team() -> Vec<Candidate> {
        vec![
            cand("alice", &["writing", "analysis"], true),
            cand("bob", &["rust", "code-review"], true),
            cand("carol", &["design", "ux"], true),
            cand("dave", &[], true),
            cand("frank", &["rust", "code-review"], false),
        ]
    }

    fn who(request: &str) -> Option<String> {
        best_match(&team(), request, &[], |_| 0).map(|(c, _)| c.identity.clone())
    }

    #[test]
    fn requests_reach_who_declared_the_capability() {
        assert_eq!(
            who("Can someone improve the onboarding flow?").as_deref(),
            Some("carol")
        );
        assert_eq!(who("please review my pull request").as_deref(), Some("bob"));
        assert_eq!(who("review the code in parser.rs").as_deref(), Some("bob"));
        assert_eq!(
            who("Draft the release announcement").as_deref(),
            Some("alice")
        );
        assert_eq!(who("my cargo build fails").as_deref(), Some("bob"));
        assert_eq!(who("Book a table for dinner"), None);
    }

    #[test]
    fn matching_is_on_whole_words_not_substrings() {
        // "audit" is no review, "preview" holds "review", "trust" holds "rust",
        // "luxury" holds "ux", "copyright" holds "copy", "prepare" holds "pr".
        for r in [
            "audit the access logs",
            "preview the page",
            "I trust you",
            "luxury hotels",
            "copyright notice",
            "prepare the room",
        ] {
            assert_eq!(who(r), None, "{r}");
        }
        assert!(mentions(&words("fix the UX of login"), "ux"));
        assert!(mentions(&words("a Code_Review please"), "code-review"));
        assert!(mentions(&words("new crates"), "rust"));
    }

    #[test]
    fn targets_compare_declared_names() {
        let t = ["Code Review".to_string()];
        let all = team();
        let (c, m) = best_match(&all, "anything", &t, |_| 0).unwrap();
        assert_eq!(
            (c.identity.as_str(), m),
            ("bob", vec!["code-review".into()])
        );
        assert!(best_match(&team(), "review", &["cooking".into()], |_| 0).is_none());
    }

    #[test]
    fn online_first_then_load_then_name() {
        let mut t = team();
        t[4].online = true;
        let pick = |load: &dyn Fn(&str) -> usize| {
            best_match(&t, "review this diff", &[], load)
                .unwrap()
                .0
                .identity
                .clone()
        };
        assert_eq!(pick(&|_| 0), "bob");
        assert_eq!(pick(&|id| usize::from(id == "bob")), "frank");
        // Offline frank only when bob is not there.
        let offline_frank = [t[1].clone(), cand("frank", &["code-review"], false)];
        let p = best_match(&offline_frank, "diff", &[], |id| {
            usize::from(id == "bob") * 10
        });
        assert_eq!(p.unwrap().0.identity, "bob");
        let only_offline = [cand("frank", &["code-review"], false)];
        assert_eq!(
            best_match(&only_offline, "diff", &[], |_| 0)
                .unwrap()
                .0
                .identity,
            "frank"
        );
    }

    #[test]
    fn lists_split_prose_does_not() {
        let s = split_task(
            "Launch plan:\n1. 2FA: add TOTP to the login\n2) 404 page redesign\n3. Write the docs; keep them short\n   and friendly\n- review the diff\n* • nested",
        );
        assert_eq!(
            s,
            [
                "2FA: add TOTP to the login",
                "404 page redesign",
                "Write the docs; keep them short and friendly",
                "review the diff",
                "• nested"
            ]
        );
        assert_eq!(
            split_task("Fix the login; then tell the users.\nThanks!"),
            ["Fix the login; then tell the users.\nThanks!"]
        );
        assert_eq!(split_task("2FA: add TOTP"), ["2FA: add TOTP"]);
        assert_eq!(split_task("404 page\n2FA codes"), ["404 page\n2FA codes"]);
        assert_eq!(split_task("   "), Vec::<String>::new());
    }

    #[test]
    fn assignment_follows_capabilities_and_spreads_load() {
        let subtasks = split_task("- review the diff\n- review the patch\n- wireframe it\n- cook");
        let mut t = team();
        t[4].online = true;
        let a: Vec<_> = assign(&subtasks, &t[1..], |_| 0)
            .into_iter()
            .map(|a| a.unwrap().identity)
            .collect();
        // The unmatched "cook" goes to the least loaded: dave, who has nothing yet.
        assert_eq!(a, ["bob", "frank", "carol", "dave"]);
        assert_eq!(assign(&subtasks, &[], |_| 0), vec![None; 4]);
    }
}
