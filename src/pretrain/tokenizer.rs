//! Training the built-in model's byte-level BPE tokenizer on the generated corpus with the
//! tokenizers crate. The recipe is SmolLM2's (see CANDLE-NOTES.md): digits split one by one,
//! then GPT-2 byte-level pre-tokenization without a prefix space, a byte-level decoder, so the
//! same encoding code serves both models.

use anyhow::{anyhow, Result};
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{BpeTrainer, BPE};
use tokenizers::models::TrainerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::{AddedToken, PreTokenizerWrapper, Tokenizer};

/// The one special token: separates documents, and is BOS, EOS and padding.
pub const END_OF_TEXT: &str = "<|endoftext|>";

pub fn train(docs: &[String], vocab_size: usize) -> Result<Tokenizer> {
    let mut tokenizer = Tokenizer::new(BPE::default());
    tokenizer.with_pre_tokenizer(Some(PreTokenizerWrapper::Sequence(Sequence::new(vec![
        PreTokenizerWrapper::Digits(Digits::new(true)),
        PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, true)),
    ]))));
    tokenizer.with_decoder(Some(ByteLevelDecoder::default()));
    let special = AddedToken::from(END_OF_TEXT, true);
    let trainer = BpeTrainer::builder()
        .vocab_size(vocab_size)
        .min_frequency(2)
        .show_progress(false)
        .special_tokens(vec![special])
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build();
    let mut trainer = TrainerWrapper::BpeTrainer(trainer);
    tokenizer
        .train(&mut trainer, docs.iter())
        .map_err(|e| anyhow!("training the tokenizer failed: {e}"))?;
    Ok(tokenizer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_is_deterministic() {
        let docs: Vec<String> = (0..300)
            .map(|i| format!("Paris is the capital of France. Count {i}: one, two, three."))
            .collect();
        let a = train(&docs, 300).unwrap();
        let b = train(&docs, 300).unwrap();
        assert_eq!(a.to_string(false).unwrap(), b.to_string(false).unwrap());
        let text = "Lima is the capital of Peru 42.";
        let ids = a.encode(text, false).unwrap().get_ids().to_vec();
        assert_eq!(a.decode(&ids, false).unwrap(), text);
        // Digits are split one by one, and the end-of-text token is id 0.
        let digits = a.encode("42", false).unwrap();
        assert_eq!(digits.get_ids().len(), 2);
        assert_eq!(a.token_to_id(END_OF_TEXT), Some(0));
    }
}
