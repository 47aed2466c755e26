//! Who gets the work: intent from keywords (as the original hub did), the
//! best-matching connected agent, and how `orchestrate_collaboration` splits a
//! task and assigns every subtask. Pure functions over plain data, unit-tested.

/// One candidate recipient: an agent identity and what it declared it is good at.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Candidate {
    pub identity: String,
    pub capabilities: Vec<String>,
}

/// An intent, the capabilities that serve it, and the original hub's suggestion text.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Intent {
    pub name: &'static str,
    pub keywords: &'static [&'static str],
    pub capabilities: &'static [&'static str],
    /// The agent kind the original hub suggested for this intent.
    pub suggested_agent: &'static str,
}

const INTENTS: &[Intent] = &[
    Intent {
        name: "code_review",
        keywords: &["review", "audit", "pull request", "pr "],
        capabilities: &["code-review", "review"],
        suggested_agent: "code_reviewer",
    },
    Intent {
        name: "coding",
        keywords: &[
            "code",
            "implement",
            "bug",
            "debug",
            "function",
            "compile",
            "refactor",
            "rust",
            "python",
        ],
        capabilities: &["code", "coding", "rust", "python", "programming"],
        suggested_agent: "code_specialist",
    },
    Intent {
        name: "analysis",
        keywords: &["analy", "data", "statistic", "measure", "benchmark"],
        capabilities: &["analysis", "data"],
        suggested_agent: "analyst",
    },
    Intent {
        name: "writing",
        keywords: &["write", "draft", "document", "summar", "explain"],
        capabilities: &["writing", "docs"],
        suggested_agent: "writer",
    },
    Intent {
        name: "research",
        keywords: &["research", "find", "search", "compare", "investigate"],
        capabilities: &["research"],
        suggested_agent: "researcher",
    },
];

const GENERAL: Intent = Intent {
    name: "general",
    keywords: &[],
    capabilities: &[],
    suggested_agent: "general_assistant",
};

/// The first intent whose keywords appear in the message (case-insensitive), else "general".
pub(crate) fn classify(message: &str) -> Intent {
    let lower = message.to_lowercase();
    INTENTS
        .iter()
        .find(|i| i.keywords.iter().any(|k| lower.contains(k)))
        .copied()
        .unwrap_or(GENERAL)
}

/// How many of `wanted` the candidate declared (case-insensitive).
fn score(candidate: &Candidate, wanted: &[String]) -> usize {
    wanted
        .iter()
        .filter(|w| {
            candidate
                .capabilities
                .iter()
                .any(|c| c.eq_ignore_ascii_case(w))
        })
        .count()
}

/// The candidate matching most of `wanted`; ties go to the lower `load`
/// (work already given in this call), then to the identity's name, so the
/// choice is deterministic. None when nobody matches at least one capability.
pub(crate) fn best_match<'a>(
    candidates: &'a [Candidate],
    wanted: &[String],
    load: impl Fn(&str) -> usize,
) -> Option<&'a Candidate> {
    candidates
        .iter()
        .map(|c| (score(c, wanted), c))
        .filter(|(s, _)| *s > 0)
        .max_by(|(sa, a), (sb, b)| {
            sa.cmp(sb)
                .then_with(|| load(&b.identity).cmp(&load(&a.identity)))
                .then_with(|| b.identity.cmp(&a.identity))
        })
        .map(|(_, c)| c)
}

/// One piece of a task, with the capabilities that suit it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Subtask {
    pub description: String,
    pub capabilities: Vec<String>,
}

/// Splits a task: one subtask per line, bullet or `;`-separated part when the
/// task lists them; otherwise the classic analyse → do → review phases.
pub(crate) fn split_task(task: &str) -> Vec<Subtask> {
    let parts: Vec<String> = task
        .split(['\n', ';'])
        .map(|p| {
            p.trim()
                .trim_start_matches(['-', '*', '•'])
                .trim_start_matches(|c: char| c.is_ascii_digit())
                .trim_start_matches(['.', ')'])
                .trim()
                .to_owned()
        })
        .filter(|p| !p.is_empty())
        .collect();
    if parts.len() > 1 {
        return parts
            .into_iter()
            .map(|p| {
                let caps = classify(&p)
                    .capabilities
                    .iter()
                    .map(|c| c.to_string())
                    .collect();
                Subtask {
                    description: p,
                    capabilities: caps,
                }
            })
            .collect();
    }
    let task = task.trim();
    let main = classify(task);
    vec![
        Subtask {
            description: format!("Analyze the requirements of: {task}"),
            capabilities: vec!["analysis".into(), "research".into()],
        },
        Subtask {
            description: format!("Carry out: {task}"),
            capabilities: main.capabilities.iter().map(|c| c.to_string()).collect(),
        },
        Subtask {
            description: format!("Review the result of: {task}"),
            capabilities: vec!["review".into(), "code-review".into()],
        },
    ]
}

/// Assigns every subtask to one of `agents` (never dropping one when there are
/// fewer agents than subtasks): the best capability match, the least loaded
/// within this plan on ties or when nobody matches. None only when `agents` is empty.
pub(crate) fn assign(subtasks: &[Subtask], agents: &[Candidate]) -> Vec<Option<String>> {
    let mut load: std::collections::HashMap<String, usize> = Default::default();
    subtasks
        .iter()
        .map(|st| {
            let pick = best_match(agents, &st.capabilities, |id| {
                load.get(id).copied().unwrap_or(0)
            })
            .or_else(|| {
                agents.iter().min_by(|a, b| {
                    let la = load.get(&a.identity).copied().unwrap_or(0);
                    let lb = load.get(&b.identity).copied().unwrap_or(0);
                    la.cmp(&lb).then_with(|| a.identity.cmp(&b.identity))
                })
            })?;
            *load.entry(pick.identity.clone()).or_default() += 1;
            Some(pick.identity.clone())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(id: &str, caps: &[&str]) -> Candidate {
        Candidate {
            identity: id.into(),
            capabilities: caps.iter().map(|c| c.to_string()).collect(),
        }
    }

    #[test]
    fn classifies_like_the_original() {
        assert_eq!(classify("Please REVIEW my patch").name, "code_review");
        assert_eq!(classify("fix this bug in the parser").name, "coding");
        assert_eq!(classify("hello there").name, "general");
        assert_eq!(classify("hello there").suggested_agent, "general_assistant");
    }

    #[test]
    fn best_match_prefers_more_capabilities_then_less_load_then_name() {
        let c = [
            cand("bob", &["rust"]),
            cand("carol", &["Rust", "code-review"]),
            cand("dave", &["writing"]),
        ];
        let want = vec!["rust".to_string(), "code-review".to_string()];
        assert_eq!(best_match(&c, &want, |_| 0).unwrap().identity, "carol");
        let want = vec!["rust".to_string()];
        assert_eq!(best_match(&c, &want, |_| 0).unwrap().identity, "bob");
        assert_eq!(
            best_match(&c, &want, |id| usize::from(id == "bob"))
                .unwrap()
                .identity,
            "carol"
        );
        assert!(best_match(&c, &["cooking".to_string()], |_| 0).is_none());
        assert!(best_match(&c, &[], |_| 0).is_none());
    }

    #[test]
    fn split_lists_and_default_phases() {
        let s = split_task("1. write the parser\n2. review it; - benchmark it");
        let d: Vec<_> = s.iter().map(|s| s.description.as_str()).collect();
        assert_eq!(d, ["write the parser", "review it", "benchmark it"]);
        let s = split_task("ship the release");
        assert_eq!(s.len(), 3);
        assert!(s[1].description.contains("ship the release"));
    }

    #[test]
    fn no_subtask_lost_with_fewer_agents() {
        let subtasks = split_task("a\nb\nc\nd\ne");
        let agents = [cand("bob", &[]), cand("carol", &[])];
        let a = assign(&subtasks, &agents);
        assert_eq!(a.len(), 5);
        assert!(a.iter().all(Option::is_some));
        let bobs = a.iter().filter(|x| x.as_deref() == Some("bob")).count();
        assert!(bobs == 2 || bobs == 3, "{a:?}");
        assert_eq!(assign(&subtasks, &[]), vec![None; 5]);
    }

    #[test]
    fn assignment_follows_capabilities() {
        let subtasks = split_task("review the patch\nanalyze the data");
        let agents = [cand("rev", &["code-review"]), cand("ana", &["analysis"])];
        assert_eq!(
            assign(&subtasks, &agents),
            vec![Some("rev".into()), Some("ana".into())]
        );
    }
}
