//! Tasks: datasets, templates, verbalizers and encoding into model input pieces.
//!
//! - [`dataset`]: task folders (`task.json` + JSONL splits) and their validation;
//! - [`template`]: the template language (`{field}`, `[P*n]`, `[T*n]`, `[ANSWER]`);
//! - [`encode`]: a template filled with one example, as tokens, slots and answer candidates;
//! - [`metric`]: answer normalisation, exact match and accuracy.
//!
//! This module knows nothing of models or prompt methods; it only needs a tokenizer.

pub mod dataset;
pub mod encode;
pub mod metric;
pub mod template;

pub use dataset::{Example, Metric, Origins, Split, Task, TaskKind, TaskSpec};
pub use encode::{encode, render_text, split_answer_whitespace, tokenize, Encoded, Piece};
pub use metric::{accuracy, exact_match, normalize_answer};
pub use template::{Segment, SlotRules, SoftPlacement, Template, TemplateError};
