//! Tasks: datasets, templates, verbalizers and encoding into model input pieces.
//!
//! - [`dataset`]: task folders (`task.json` + JSONL splits) and their validation;
//! - [`template`]: the template language (`{field}`, `[P*n]`, `[T*n]`, `[ANSWER]`);
//! - [`encode`]: a template filled with one example, as tokens, slots and answer candidates;
//! - [`metric`]: the answer before its stop, exact match and accuracy.
//!
//! This module knows nothing of models or prompt methods; it only needs a tokenizer.

pub mod dataset;
pub mod encode;
pub mod metric;
pub mod template;

pub use dataset::{
    AnswerEnd, Example, Metric, Origins, Split, Task, TaskKind, TaskSpec, DEFAULT_MAX_NEW_TOKENS,
};
pub use encode::{
    bos_tokens, encode, render_text, split_answer_whitespace, tokenize, Encoded, Piece,
    END_OF_SEQUENCE,
};
pub use metric::{accuracy, exact_match, text_before_stop};
pub use template::{Segment, SlotRules, SoftPlacement, Template, TemplateError};
