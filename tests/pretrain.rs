//! `gradprompt pretrain` on the quick recipe: the same recipe gives the same bytes, and the
//! result is a Hugging Face folder that the normal loader reads and that has learnt something
//! (its loss fell below that of a uniform guess over the vocabulary).

use gradprompt::model::Model;
use gradprompt::pretrain::{self, PretrainConfig};
use std::path::Path;

fn build(out: &Path) -> pretrain::Report {
    let tasks = Path::new(env!("CARGO_MANIFEST_DIR")).join("sample_tasks");
    pretrain::run(&PretrainConfig::quick(), &tasks, out, "test", &mut |_| {}).unwrap()
}

#[test]
fn quick_pretrain_is_reproducible_and_loadable() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let ra = build(&a);
    let rb = build(&b);
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        assert_eq!(
            std::fs::read(a.join(f)).unwrap(),
            std::fs::read(b.join(f)).unwrap(),
            "{f} differs between two runs of the same recipe"
        );
    }
    assert_eq!(ra.corpus_sha256, rb.corpus_sha256);
    let uniform = (ra.recipe.vocab_size as f32).ln();
    assert!(
        ra.heldout_loss < uniform - 0.5,
        "held-out loss {} is no better than uniform {uniform}",
        ra.heldout_loss
    );

    let m = Model::load(a.to_str().unwrap()).unwrap();
    assert_eq!(m.config().num_hidden_layers, 2);
    let ids = m.encode("Paris is the capital of France.").unwrap();
    assert_eq!(m.decode(&ids).unwrap(), "Paris is the capital of France.");
}

#[test]
fn a_missing_tasks_folder_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let err = pretrain::run(
        &PretrainConfig::quick(),
        &dir.path().join("nowhere"),
        &dir.path().join("out"),
        "test",
        &mut |_| {},
    )
    .unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("nowhere"), "{msg}");
}
