"""A tiny Hugging Face Llama checkpoint made on the spot: random weights saved by transformers, and a
SentencePiece tokenizer trained here on a few sentences.  Needs torch, transformers and sentencepiece.

Why Llama and SentencePiece, not GPT-2 and BPE: convert_hf_to_gguf.py identifies a BPE tokenizer's
pre-tokenizer by hashing how it splits a fixed text, and stops on an unknown hash ("BPE
pre-tokenizer was not recognized", conversion/base.py get_vocab_base_pre); a BPE vocabulary trained
here always has an unknown hash.  A SentencePiece model (tokenizer.model) is read as it is.

The weights are transformers' random init except the output head, drawn wider (std 2 over 256
inputs: logits with std ~32), and the seed is fixed: random models often have near-tied top-2
logits, where two backends that differ only by rounding pick different tokens.  Seed 3 was chosen
(seeds 0-39 tried in float32 with torch): each of its 8 greedy steps after PROMPT leads by >= 2.26
logits, with 6 distinct tokens; the suite re-checks the margins llama.cpp itself reports.  Stand-alone (no pytest): the GPU-machine script imports it too.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

#: Training text for the tokenizer; the prompt the tests use is made of these words.
CORPUS = [
    "hello world and the quick brown fox jumps over the lazy dog",
    "the cat sat on the mat and the dog sat on the log",
    "a small model is trained on a small text to test the programs",
    "llama cpp converts a hugging face model to gguf and quantizes it",
    "the server answers a completion request with greedy tokens",
    "numbers one two three four five six seven eight nine ten",
    "graphics cards run the model fast and the processor runs it too",
    "hello again world, the end of the small text is near",
]


#: The prompt the suite completes (its words are in CORPUS).
PROMPT = "hello world and the"
SEED = 3
HEAD_STD = 2.0


def train_tokenizer(folder: Path, vocab_size: int = 400) -> Path:
    """``folder/tokenizer.model``: a BPE SentencePiece model, <unk>=0 <s>=1 </s>=2, word pieces only.

    No byte fallback: with 256 byte tokens in a 400-token vocabulary a random model mostly generates
    lone bytes, whose invalid UTF-8 the server and the command line print differently.
    """
    import sentencepiece as spm

    folder.mkdir(parents=True, exist_ok=True)
    prefix = folder / "tokenizer"
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS * 8), model_prefix=str(prefix), model_type="bpe", vocab_size=vocab_size,
        byte_fallback=False, character_coverage=1.0, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        hard_vocab_limit=False, num_threads=1, minloglevel=2,
    )
    (folder / "tokenizer.vocab").unlink(missing_ok=True)
    return folder / "tokenizer.model"


def spm_vocabulary(model_file: str | os.PathLike[str]) -> tuple[list[str], list[float], list[int]]:
    """(tokens, scores, token types) of a SentencePiece model, in GGUF's order and numbering
    (sentencepiece's piece types NORMAL=1 UNKNOWN=2 CONTROL=3 USER_DEFINED=4 UNUSED=5 BYTE=6 are llama.cpp's)."""
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(model_file))
    tokens, scores, types = [], [], []
    for i in range(sp.get_piece_size()):
        tokens.append(sp.id_to_piece(i))
        scores.append(sp.get_score(i))
        types.append(2 if sp.is_unknown(i) else 3 if sp.is_control(i) else 6 if sp.is_byte(i) else 5 if sp.is_unused(i) else 1)
    return tokens, scores, types


def write_tiny_hf_llama(folder: str | os.PathLike[str], *, seed: int = SEED) -> Path:
    """Save config.json, model.safetensors, tokenizer.model and tokenizer_config.json into ``folder``."""
    import sentencepiece as spm
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    folder = Path(folder)
    sp = spm.SentencePieceProcessor(model_file=str(train_tokenizer(folder)))
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=sp.get_piece_size(), hidden_size=256, intermediate_size=512, num_hidden_layers=2,
        # head_dim 64: every llama.cpp attention kernel has it; rows of 256 and 512: Q4_K (blocks of 256) applies
        num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=256, rms_norm_eps=1e-5, tie_word_embeddings=False,
        bos_token_id=1, eos_token_id=2, torch_dtype="float32",
    )
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        model.lm_head.weight.normal_(0.0, HEAD_STD)
    model.save_pretrained(folder, safe_serialization=True)
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
        "add_bos_token": True, "add_eos_token": False, "model_max_length": 256,
    }, indent=1))
    return folder


if __name__ == "__main__":  # python3 hf_tiny_llama.py DIR
    import sys

    print(write_tiny_hf_llama(sys.argv[1]))
