//! gradprompt: learn prompts for a frozen language model with gradients, and compare them with
//! fine-tuning. The engine (model, task, methods, train, artifact) never depends on the GUI,
//! which sits behind the default cargo feature `gui`: without it nothing here can name egui.

pub mod artifact;
pub mod atomic;
pub mod bench;
#[cfg(feature = "gui")]
pub mod gui;
pub mod methods;
pub mod model;
pub mod peft;
pub mod playground;
pub mod predictions;
pub mod pretrain;
pub mod run;
pub mod runs;
pub mod runtime;
pub mod serve;
pub mod stats;
pub mod task;
pub mod train;
