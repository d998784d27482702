//! A scripted [`RemoteExec`] for unit tests of one runner: answers by the first rule whose pattern is
//! a substring of the command, records every command, stdin and upload. Not for integration tests,
//! which use a real OpenSSH server.

use super::{Output, RemoteError, RemoteExec};
use std::collections::BTreeMap;
use std::path::Path;

/// One command the fake received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// The command line.
    pub command: String,
    /// What was fed on stdin.
    pub stdin: Vec<u8>,
}

struct Rule {
    pattern: String,
    answers: Vec<Output>,
}

/// The fake machine.
pub struct FakeRemote {
    target: String,
    rules: Vec<Rule>,
    /// Every command, in order.
    pub calls: Vec<Call>,
    /// Uploaded files by remote path.
    pub uploads: BTreeMap<String, Vec<u8>>,
    /// Files written with [`RemoteExec::upload_secret`] (mode 0600), by remote path.
    pub secret_uploads: BTreeMap<String, Vec<u8>>,
}

impl FakeRemote {
    /// A fake machine named `target`; unmatched commands exit 0 with no output.
    pub fn new(target: &str) -> FakeRemote {
        FakeRemote {
            target: target.to_string(),
            rules: Vec::new(),
            calls: Vec::new(),
            uploads: BTreeMap::new(),
            secret_uploads: BTreeMap::new(),
        }
    }

    /// Commands containing `pattern` answer with these outputs in turn (the last one repeats).
    pub fn on(mut self, pattern: &str, answers: Vec<(u32, &str)>) -> FakeRemote {
        assert!(!answers.is_empty(), "a rule needs at least one answer");
        self.rules.push(Rule {
            pattern: pattern.to_string(),
            answers: answers
                .into_iter()
                .map(|(code, out)| Output {
                    code,
                    stdout: out.as_bytes().to_vec(),
                    stderr: Vec::new(),
                })
                .collect(),
        });
        self
    }

    /// Commands run so far that contain `pattern`.
    pub fn ran(&self, pattern: &str) -> usize {
        self.calls
            .iter()
            .filter(|c| c.command.contains(pattern))
            .count()
    }
}

impl RemoteExec for FakeRemote {
    fn target(&self) -> &str {
        &self.target
    }

    fn exec(&mut self, command: &str, stdin: &[u8]) -> Result<Output, RemoteError> {
        self.calls.push(Call {
            command: command.to_string(),
            stdin: stdin.to_vec(),
        });
        for rule in &mut self.rules {
            if command.contains(&rule.pattern) {
                let answer = if rule.answers.len() > 1 {
                    rule.answers.remove(0)
                } else {
                    rule.answers[0].clone()
                };
                return Ok(answer);
            }
        }
        Ok(Output {
            code: 0,
            stdout: Vec::new(),
            stderr: Vec::new(),
        })
    }

    fn upload(&mut self, local: &Path, remote_path: &str) -> Result<(), RemoteError> {
        let data = std::fs::read(local).map_err(|source| RemoteError::Local {
            path: local.to_path_buf(),
            source,
        })?;
        self.uploads.insert(remote_path.to_string(), data);
        Ok(())
    }

    fn upload_secret(&mut self, data: &[u8], remote_path: &str) -> Result<(), RemoteError> {
        self.secret_uploads
            .insert(remote_path.to_string(), data.to_vec());
        Ok(())
    }
}
