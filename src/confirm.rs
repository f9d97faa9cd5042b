//! Confirmation before a dangerous operation (docs/operators.md): on a
//! terminal berth shows what will happen and asks y/N, no being the
//! default; `--yes` answers for the operator; without a terminal berth never
//! asks, and refuses (exit 2) naming `--yes`.
//!
//! A y/N line needs no prompt library: a line read from standard input, in
//! a thread of its own so Ctrl-C still stops berth while it waits.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use crate::error::{BerthError, input_error};
use crate::interrupt::Interrupts;

/// The flag that answers yes to every confirmation.
pub const YES_FLAG: &str = "--yes";

/// A dangerous operation, as berth asks about it before running it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    /// What will happen, as a verb phrase: `deploy 3f2a9c1d0e4b to production`.
    pub action: String,
    /// Why berth asks: `production is protected and no other environment ran 3f2a9c1d0e4b successfully`.
    pub why: String,
    /// What the operator should know before answering, one fact a line:
    /// the environment, from → to, the target's age.
    pub facts: Vec<String>,
}

impl Question {
    /// The text shown on a terminal: why, the facts, and the y/N question.
    pub fn prompt(&self) -> String {
        let mut text = format!("{}:\n", self.why);
        for fact in &self.facts {
            text.push_str(&format!("  {fact}\n"));
        }
        text.push_str(&format!("{}? [y/N] ", capitalized(&self.action)));
        text
    }

    /// The refusal without a terminal: why, and the flag that goes on.
    pub fn refusal(&self) -> String {
        format!(
            "{}; pass {YES_FLAG} to {} (berth asks for confirmation only on a terminal; \
             nothing was changed)",
            self.why, self.action
        )
    }
}

/// Whether berth may ask: standard input and standard error are terminals.
pub fn can_ask() -> bool {
    std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
}

/// Whether an answer is yes: `y` or `yes`, in any case. Anything else,
/// an empty line (the default) included, is no.
pub fn is_yes(answer: &str) -> bool {
    matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

/// Go on when `yes` (`--yes` was given) or the operator answers yes on the
/// terminal. Otherwise an input error (exit 2) saying nothing was changed:
/// the refusal naming `--yes` without a terminal, or the operator's no
/// (or end of input). Ctrl-C, SIGTERM or SIGHUP while asking: exit 130.
pub async fn confirm(question: &Question, yes: bool) -> anyhow::Result<()> {
    if yes {
        return Ok(());
    }
    if !can_ask() {
        return Err(input_error(question.refusal()));
    }
    let mut interrupts = Interrupts::listen()?;
    {
        let mut stderr = std::io::stderr().lock();
        let _ = write!(stderr, "{}", question.prompt());
        let _ = stderr.flush();
    }
    let (sender, answer) = tokio::sync::oneshot::channel();
    // Not the runtime's blocking pool: a read still waiting when berth
    // exits (after Ctrl-C) must not hold the runtime's shutdown up.
    std::thread::spawn(move || {
        let mut line = String::new();
        let read = std::io::stdin().read_line(&mut line).map(|_| line);
        let _ = sender.send(read);
    });
    let line = tokio::select! {
        answer = answer => answer.ok().and_then(Result::ok).unwrap_or_default(),
        _ = interrupts.recv() => {
            crate::output::stderr_line("");
            return Err(BerthError::Interrupted.into());
        }
    };
    if is_yes(&line) {
        Ok(())
    } else {
        if line.is_empty() {
            // End of input: the answer line never ended.
            crate::output::stderr_line("");
        }
        Err(input_error(format!(
            "not confirmed: did not {}; nothing was changed (pass {YES_FLAG} to skip the question)",
            question.action
        )))
    }
}

/// The time between RFC 3339 `then` and now, as [`crate::duration::display`]
/// says it; `None`
/// when `then` is unreadable.
pub fn age_since(then: &str) -> Option<String> {
    let then: k8s_openapi::jiff::Timestamp = then.parse().ok()?;
    let seconds = k8s_openapi::jiff::Timestamp::now().as_second() - then.as_second();
    Some(crate::duration::display(Duration::from_secs(
        seconds.max(0).unsigned_abs(),
    )))
}

fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn question() -> Question {
        Question {
            action: "deploy 2b3c4d5e6f70 to production".into(),
            why: "production is protected and no other environment ran 2b3c4d5e6f70 successfully"
                .into(),
            facts: vec![
                "environment: production".into(),
                "from 1a2b → to 2b3c".into(),
            ],
        }
    }

    #[test]
    fn only_y_or_yes_is_yes_and_no_is_the_default() {
        for yes in ["y", "Y", "yes", " YES\n", "y\r\n"] {
            assert!(is_yes(yes), "{yes:?}");
        }
        for no in ["", "\n", "n", "no", "yep", "sure", "y y"] {
            assert!(!is_yes(no), "{no:?}");
        }
    }

    #[test]
    fn the_prompt_shows_why_the_facts_and_asks_y_n() {
        assert_eq!(
            question().prompt(),
            "production is protected and no other environment ran 2b3c4d5e6f70 successfully:\n  \
             environment: production\n  from 1a2b → to 2b3c\nDeploy 2b3c4d5e6f70 to production? [y/N] "
        );
    }

    #[test]
    fn the_refusal_names_the_flag_and_what_it_does() {
        let refusal = question().refusal();
        assert!(
            refusal.contains("pass --yes to deploy 2b3c4d5e6f70 to production"),
            "{refusal}"
        );
        assert!(refusal.contains("nothing was changed"), "{refusal}");
    }

    #[tokio::test]
    async fn yes_goes_on_without_asking() {
        confirm(&question(), true).await.unwrap();
    }
}
