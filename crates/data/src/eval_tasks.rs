//! Multiple-choice evaluation tasks built from the bundled corpus (`data/eval/`, docs/EVAL.md):
//! two consecutive lines of a validation document as the context, the line that follows and
//! three lines from elsewhere in the task's validation documents as the choices. Only
//! validation documents are used, so a model trained on the corpus's training split has never
//! seen them. The same corpus gives the same tasks, byte for byte (`covenant data eval-tasks`).

use std::collections::BTreeSet;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};
use crate::input::{for_each_document, list_inputs};
use crate::prepare::{is_val_document, DEFAULT_VAL_FRACTION};
use crate::sampler::SampleStream;

/// A task: its name, what it asks, and the corpus files (by stem) its documents come from.
pub struct TaskSpec {
    pub name: &'static str,
    pub description: &'static str,
    pub sources: &'static [&'static str],
}

pub const TASKS: [TaskSpec; 2] = [
    TaskSpec {
        name: "covenant_next_verse",
        description: "scripture (King James Version and text derived from the World English \
                      Bible): after two verses, pick the next one among 4",
        sources: &["kjv", "web"],
    },
    TaskSpec {
        name: "covenant_next_line",
        description: "Shakespeare's plays: after two lines, pick the next one among 4",
        sources: &["shakespeare"],
    },
];

/// Items per task.
pub const ITEMS: usize = 100;
/// Lines that can be a context line or a choice: this many characters, bounds included.
const LINE_CHARS: (usize, usize) = (20, 100);
/// The sampler's domain of the tasks' draws (the task's name is the field).
const EVAL_TASKS_DOMAIN: &str = "covenant/data/eval-tasks/v1";
/// Largest task file read, and largest item.
const MAX_TASK_BYTES: u64 = 16 << 20;
const MAX_ITEM_CHARS: usize = 4096;

/// One multiple-choice item. The choices follow the context after a newline (lm-eval's
/// `target_delimiter: "\n"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McItem {
    pub context: String,
    pub choices: Vec<String>,
    pub answer: usize,
    /// Corpus file and validation document number the context comes from.
    pub source: String,
}

/// The lines of one validation document.
struct Doc {
    source: String,
    lines: Vec<String>,
}

/// Builds every task of [`TASKS`] from the corpus in `corpus_dir`.
pub fn build_tasks(corpus_dir: &Path) -> Result<Vec<(&'static TaskSpec, Vec<McItem>)>> {
    let docs = validation_docs(corpus_dir)?;
    TASKS
        .iter()
        .map(|t| {
            let mine: Vec<&(String, Doc)> = docs
                .iter()
                .filter(|(stem, _)| t.sources.contains(&stem.as_str()))
                .collect();
            let items = build_task(t.name, &mine)?;
            Ok((t, items))
        })
        .collect()
}

fn validation_docs(corpus_dir: &Path) -> Result<Vec<(String, Doc)>> {
    let mut docs = Vec::new();
    let mut index = 0u64;
    for file in list_inputs(corpus_dir)? {
        let name = file.path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let stem = name.split('.').next().unwrap_or("").to_string();
        for_each_document(&file, &mut |_| {}, &mut |text| {
            if is_val_document(index, DEFAULT_VAL_FRACTION) {
                let lines = text.lines().map(|l| l.trim().to_string()).collect();
                let source = format!("{stem}, document {index}");
                docs.push((stem.clone(), Doc { source, lines }));
            }
            index += 1;
            Ok(())
        })?;
    }
    Ok(docs)
}

fn usable(line: &str) -> bool {
    let n = line.chars().count();
    (LINE_CHARS.0..=LINE_CHARS.1).contains(&n) && !line.starts_with("Chapter ")
}

fn build_task(name: &str, docs: &[&(String, Doc)]) -> Result<Vec<McItem>> {
    let mut rng = SampleStream::for_domain(EVAL_TASKS_DOMAIN, name.as_bytes());
    // Every (document, i) whose lines i, i+1 and i+2 are usable, and every usable line.
    let mut triples: Vec<(usize, usize)> = Vec::new();
    let mut pool: BTreeSet<&str> = BTreeSet::new();
    for (d, (_, doc)) in docs.iter().enumerate() {
        for i in 0..doc.lines.len().saturating_sub(2) {
            if doc.lines[i..i + 3].iter().all(|l| usable(l)) {
                triples.push((d, i));
            }
        }
        pool.extend(doc.lines.iter().filter(|l| usable(l)).map(String::as_str));
    }
    let pool: Vec<&str> = pool.into_iter().collect();
    shuffle(&mut triples, &mut rng);
    let mut items = Vec::with_capacity(ITEMS);
    let mut answers = BTreeSet::new();
    for (d, i) in triples {
        if items.len() == ITEMS {
            break;
        }
        let doc = &docs[d].1;
        let answer = doc.lines[i + 2].as_str();
        if !answers.insert(answer) {
            continue;
        }
        let taken = [doc.lines[i].as_str(), doc.lines[i + 1].as_str(), answer];
        let mut choices: Vec<String> = Vec::with_capacity(4);
        while choices.len() < 3 && pool.len() > 6 {
            let c = pool[below(&mut rng, pool.len())];
            if !taken.contains(&c) && !choices.iter().any(|x| x == c) {
                choices.push(c.to_string());
            }
        }
        let at = below(&mut rng, 4);
        choices.insert(at.min(choices.len()), answer.to_string());
        items.push(McItem {
            context: format!("{}\n{}", doc.lines[i], doc.lines[i + 1]),
            answer: choices.iter().position(|c| c == answer).unwrap_or(0),
            choices,
            source: docs[d].1.source.clone(),
        });
    }
    if items.len() < ITEMS {
        return Err(DataError::InvalidArgument(format!(
            "task {name}: only {} items from the corpus, {ITEMS} wanted",
            items.len()
        )));
    }
    Ok(items)
}

/// The items as JSON lines.
pub fn to_jsonl(items: &[McItem]) -> Vec<u8> {
    let mut out = Vec::new();
    for it in items {
        out.extend(serde_json::to_vec(it).unwrap_or_default());
        out.push(b'\n');
    }
    out
}

/// Reads a task file written by [`to_jsonl`], checking every item.
pub fn read_task(path: &Path) -> Result<Vec<McItem>> {
    let meta = std::fs::metadata(path).map_err(|e| DataError::io(path, e))?;
    if meta.len() > MAX_TASK_BYTES {
        return Err(DataError::InvalidArgument(format!(
            "{} is larger than {MAX_TASK_BYTES} bytes",
            path.display()
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
    let mut items = Vec::new();
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let bad = |why: String| {
            DataError::InvalidArgument(format!("{} line {}: {why}", path.display(), n + 1))
        };
        let it: McItem = serde_json::from_str(line).map_err(|e| bad(e.to_string()))?;
        if !(2..=16).contains(&it.choices.len()) || it.answer >= it.choices.len() {
            return Err(bad(format!(
                "{} choices with answer {}",
                it.choices.len(),
                it.answer
            )));
        }
        let chars = it.context.len() + it.choices.iter().map(String::len).sum::<usize>();
        if it.context.is_empty()
            || it.choices.iter().any(String::is_empty)
            || chars > MAX_ITEM_CHARS
        {
            return Err(bad("empty context or choice, or an item over 4 KiB".into()));
        }
        items.push(it);
    }
    Ok(items)
}

/// lm-evaluation-harness's task file for a task written as `<name>.jsonl` under `data_dir`
/// (a path as lm-eval will open it, relative to where it runs).
pub fn lm_eval_yaml(t: &TaskSpec, data_dir: &str) -> String {
    format!(
        "# {desc}\n# Built by `covenant data eval-tasks` from the bundled corpus (data/eval/SOURCES.md).\n\
         task: {name}\n\
         dataset_path: json\n\
         dataset_kwargs:\n  data_files:\n    test: {data_dir}/{name}.jsonl\n\
         test_split: test\n\
         output_type: multiple_choice\n\
         doc_to_text: \"{{{{context}}}}\"\n\
         doc_to_choice: \"{{{{choices}}}}\"\n\
         doc_to_target: \"{{{{answer}}}}\"\n\
         target_delimiter: \"\\n\"\n\
         metric_list:\n  - metric: acc\n  - metric: acc_norm\n",
        desc = t.description,
        name = t.name,
    )
}

fn below(s: &mut SampleStream, n: usize) -> usize {
    s.bounded(n as u64) as usize
}

fn shuffle<T>(v: &mut [T], s: &mut SampleStream) {
    for i in (1..v.len()).rev() {
        v.swap(i, below(s, i + 1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_task_files_are_refused_with_the_line() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("t.jsonl");
        let good = McItem {
            context: "a line".into(),
            choices: vec!["x".into(), "y".into()],
            answer: 1,
            source: "test".into(),
        };
        std::fs::write(&p, to_jsonl(std::slice::from_ref(&good))).unwrap();
        assert_eq!(read_task(&p).unwrap(), vec![good.clone()]);
        let mut bad = good.clone();
        bad.answer = 2;
        std::fs::write(&p, to_jsonl(&[good.clone(), bad])).unwrap();
        let e = read_task(&p).unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("answer 2"), "{e}");
        std::fs::write(&p, b"{\"context\": 3}\n").unwrap();
        assert!(read_task(&p).unwrap_err().to_string().contains("line 1"));
    }

    #[test]
    fn items_have_four_distinct_usable_choices_and_the_answer_anywhere() {
        let built = build_tasks(&crate::bundled::corpus_dir()).unwrap();
        for (t, items) in built {
            assert_eq!(items.len(), ITEMS, "{}", t.name);
            for it in &items {
                assert_eq!(it.choices.len(), 4);
                let distinct: BTreeSet<&String> = it.choices.iter().collect();
                assert_eq!(distinct.len(), 4, "{it:?}");
                assert!(it.choices.iter().all(|c| usable(c)));
            }
            // The answer's position is spread, not fixed.
            let at: BTreeSet<usize> = items.iter().map(|i| i.answer).collect();
            assert_eq!(at.len(), 4, "{}", t.name);
        }
    }
}
