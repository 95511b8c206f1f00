//! The names of the tensors a method exports, listed once. Methods write them; the artifact file
//! (`artifact.rs`), the PEFT export (`peft.rs`) and the playground read them back. They live
//! here, below all three, because dependencies run one way (task, model -> methods -> train ->
//! artifact): methods must not import the artifact module to learn what to call their output.
//! Renaming one changes the on-disk format of every saved prompt.

/// The soft prompt `[n, d_model]` (Prompt Tuning, P-Tuning's encoder output) or Prefix
/// Tuning's flat key/value prefix `[n, layers * 2 * kv_heads * head_dim]`. PEFT's own name for
/// the tensor in `adapter_model.safetensors`, so an export writes it under the same name.
pub const PROMPT_EMBEDDINGS: &str = "prompt_embeddings";

/// AutoPrompt's trigger token ids, one per trigger slot, in slot order.
pub const TRIGGER_IDS: &str = "trigger_ids";

/// P-Tuning's prompt-encoder weights: the LSTM, and the MLP's linear layers named by their
/// index in PyTorch's `nn.Sequential` as PEFT's encoder lays it out (activations between). Never
/// exported: the encoder is dropped at export. The names still matter: the weights are drawn
/// from the seeded generator in the sorted order of these names, so renaming one changes what
/// a seeded run learns.
pub const P_TUNING_LSTM: &str = "lstm";
pub const P_TUNING_MLP: [&str; 3] = ["mlp.0", "mlp.2", "mlp.4"];
