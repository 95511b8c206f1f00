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

/// P-Tuning's prompt-encoder weights, named as in PEFT's `PromptEncoder` state dict: the LSTM
/// (`lstm_head.weight_ih_l0`, ... as `nn.LSTM` names them), and the MLP's linear layers by
/// their index in PyTorch's `nn.Sequential` (activations between). Never in an adapter (the
/// encoder is dropped at export), but a PEFT recipe loads them by these names to start where
/// the run started. The names also matter here: the weights are drawn from the seeded
/// generator in the sorted order of these names, so a rename that changes that order changes
/// what a seeded run learns (`lstm` -> `lstm_head`, `mlp` -> `mlp_head` kept it).
pub const P_TUNING_LSTM: &str = "lstm_head";
pub const P_TUNING_MLP: [&str; 3] = ["mlp_head.0", "mlp_head.2", "mlp_head.4"];
/// The encoder's input, PEFT's `nn.Embedding` over the virtual-token indices (P-Tuning, and
/// Prefix Tuning's projection input); Prompt Tuning's soft prompt in PEFT's `PromptEmbedding`.
pub const PEFT_EMBEDDING: &str = "embedding.weight";
/// Prefix Tuning's constant real-text key/value offset, added to its MLP's output: no PEFT
/// module holds it, so a recipe's train.py adds it (`peft::recipe`).
pub const PREFIX_OFFSET: &str = "gradprompt.real_text_offset";
