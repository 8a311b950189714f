"""Write a tiny random-weight llama model as GGUF, so llama.cpp can be tested without a download.

The tokenizer is a SentencePiece-style ('llama') vocabulary: <unk>, <s>, </s>, the 256 byte
tokens <0x00>..<0xFF> (llama.cpp's byte fallback and its newline lookup need them) and a few
word pieces.  Weights are normal random values with variances chosen so activations stay O(1)
and the logits have clear top-1 margins, which keeps greedy decoding stable between backends.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gguf
import numpy as np


@dataclass(frozen=True)
class TinyLlama:
    n_layer: int = 2
    n_embd: int = 128
    n_head: int = 2  # head_dim 64: a size every llama.cpp attention kernel supports
    n_head_kv: int = 1  # grouped-query attention, as real llamas use
    n_ff: int = 256
    n_ctx: int = 256
    rms_eps: float = 1e-5
    # Larger output scale -> logits with std ~4, so the greedy winner leads by a wide margin.
    output_scale: float = 4.0

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head


_PIECES = ["▁", "▁the", "▁a", "▁hello", "▁world", "▁and", "▁of", "▁to", "▁in", "▁is",
           "e", "t", "a", "o", "n", "s", "r", "l", "h", "d"]


def vocab() -> tuple[list[str], list[float], list[int]]:
    tokens = ["<unk>", "<s>", "</s>"]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
    tokens += [f"<0x{b:02X}>" for b in range(256)]
    types += [gguf.TokenType.BYTE] * 256
    tokens += _PIECES
    types += [gguf.TokenType.NORMAL] * len(_PIECES)
    # SentencePiece scores: higher merges first; byte/control tokens never win a merge.
    scores = [0.0] * (3 + 256) + [-float(i) for i in range(len(_PIECES))]
    return tokens, scores, [int(t) for t in types]


def write_tiny_llama(path: str | Path, *, seed: int = 0, spec: TinyLlama = TinyLlama(), dtype: str = "f16",
                     vocabulary: tuple[list[str], list[float], list[int]] | None = None) -> Path:
    """Write the model to ``path`` (matrices in ``dtype`` f16 or f32, norms in f32).

    ``vocabulary``: (tokens, scores, types) of another SentencePiece vocabulary, ids 0/1/2 = <unk>/<s>/</s>
    (hf_tiny_llama.spm_vocabulary reads one from a trained tokenizer.model); default: vocab() above.
    """
    path = Path(path)
    rng = np.random.default_rng(seed)
    tokens, scores, types = vocabulary or vocab()
    n_vocab = len(tokens)
    mat_dtype = {"f16": np.float16, "f32": np.float32}[dtype]

    def mat(rows: int, cols: int, scale: float = 1.0) -> np.ndarray:
        # numpy shape (out, in) is GGUF's ne = [in, out]; 1/sqrt(in) keeps each layer's output O(1).
        return (rng.standard_normal((rows, cols)) * scale / np.sqrt(cols)).astype(mat_dtype)

    def norm(n: int) -> np.ndarray:
        return (1.0 + 0.1 * rng.standard_normal(n)).astype(np.float32)

    # Written aside and renamed: a crashed run never leaves a truncated model behind.
    tmp = path.with_name(path.name + ".part")
    w = gguf.GGUFWriter(str(tmp), "llama")
    w.add_name("wheelforge-tiny-llama")
    w.add_context_length(spec.n_ctx)
    w.add_embedding_length(spec.n_embd)
    w.add_block_count(spec.n_layer)
    w.add_feed_forward_length(spec.n_ff)
    w.add_head_count(spec.n_head)
    w.add_head_count_kv(spec.n_head_kv)
    w.add_rope_dimension_count(spec.head_dim)
    w.add_layer_norm_rms_eps(spec.rms_eps)
    w.add_vocab_size(n_vocab)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if dtype == "f16" else gguf.LlamaFileType.ALL_F32)
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_unk_token_id(0)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)

    kv = spec.n_head_kv * spec.head_dim
    w.add_tensor("token_embd.weight", (rng.standard_normal((n_vocab, spec.n_embd))).astype(mat_dtype))
    for i in range(spec.n_layer):
        p = f"blk.{i}"
        w.add_tensor(f"{p}.attn_norm.weight", norm(spec.n_embd))
        w.add_tensor(f"{p}.attn_q.weight", mat(spec.n_embd, spec.n_embd))
        w.add_tensor(f"{p}.attn_k.weight", mat(kv, spec.n_embd))
        w.add_tensor(f"{p}.attn_v.weight", mat(kv, spec.n_embd))
        w.add_tensor(f"{p}.attn_output.weight", mat(spec.n_embd, spec.n_embd, 0.5))
        w.add_tensor(f"{p}.ffn_norm.weight", norm(spec.n_embd))
        w.add_tensor(f"{p}.ffn_gate.weight", mat(spec.n_ff, spec.n_embd))
        w.add_tensor(f"{p}.ffn_up.weight", mat(spec.n_ff, spec.n_embd))
        w.add_tensor(f"{p}.ffn_down.weight", mat(spec.n_embd, spec.n_ff, 0.5))
    w.add_tensor("output_norm.weight", norm(spec.n_embd))
    w.add_tensor("output.weight", mat(n_vocab, spec.n_embd, spec.output_scale))

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    tmp.replace(path)
    return path
