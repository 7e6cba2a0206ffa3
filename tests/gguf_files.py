"""Tiny GGUF files for tests, written with the ``gguf`` package from a tiny Llama.

:func:`write_llama_gguf` stores a Hugging Face Llama the way llama.cpp's converter does (q/k
rows permuted for its rotary layout, names like ``blk.0.attn_q.weight``, a GPT-2 style BPE
vocabulary with merges), so transformers' GGUF loader reads it back into the same model.
:func:`write_raw_gguf` writes a file with any architecture and tensor types, for error cases.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

_NAMES = {
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
    "input_layernorm": "attn_norm",
    "post_attention_layernorm": "ffn_norm",
}


def _permute(w: np.ndarray, n_head: int) -> np.ndarray:
    # llama.cpp's convert_hf_to_gguf permute(): rows of each head reordered for its RoPE.
    return (
        w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
        .swapaxes(1, 2)
        .reshape(w.shape)
    )


def _gguf_name(hf: str) -> str:
    if hf == "model.embed_tokens.weight":
        return "token_embd.weight"
    if hf == "model.norm.weight":
        return "output_norm.weight"
    if hf == "lm_head.weight":
        return "output.weight"
    _, _, layer, rest = hf.split(".", 3)  # model.layers.<i>.<module>.weight
    module, _, kind = rest.rpartition(".")
    return f"blk.{layer}.{_NAMES[module]}.{kind}"


def write_llama_gguf(path: Path, model, tokenizer, *, qtype: str = "F32") -> Path:
    """``model`` (LlamaForCausalLM) and its byte-level BPE ``tokenizer`` as a GGUF file; matrices
    quantised to ``qtype`` (``F32``, ``F16``, ``Q8_0`` ...), norms kept in F32."""
    import json

    import gguf

    cfg = model.config
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny-llama")
    writer.add_block_count(cfg.num_hidden_layers)
    writer.add_context_length(cfg.max_position_embeddings)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_head_count(cfg.num_attention_heads)
    writer.add_head_count_kv(cfg.num_key_value_heads)
    writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    writer.add_rope_freq_base(cfg.rope_parameters["rope_theta"])
    writer.add_rope_dimension_count(cfg.hidden_size // cfg.num_attention_heads)
    writer.add_vocab_size(cfg.vocab_size)
    state = json.loads(tokenizer.backend_tokenizer.to_str())
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])
    merges = [m if isinstance(m, str) else " ".join(m) for m in state["model"]["merges"]]
    special = set(tokenizer.all_special_tokens)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list([t for t, _ in vocab])
    writer.add_token_types([3 if t in special else 1 for t, _ in vocab])  # 3 = control
    writer.add_token_merges(merges)
    writer.add_bos_token_id(tokenizer.bos_token_id)
    writer.add_eos_token_id(tokenizer.eos_token_id)
    writer.add_pad_token_id(tokenizer.pad_token_id)
    writer.add_add_bos_token(False)  # as the source tokenizer: no BOS added
    quant = gguf.GGMLQuantizationType[qtype]
    for name, tensor in model.state_dict().items():
        w = tensor.detach().float().numpy()
        if name.endswith("q_proj.weight"):
            w = _permute(w, cfg.num_attention_heads)
        elif name.endswith("k_proj.weight"):
            w = _permute(w, cfg.num_key_value_heads)
        if w.ndim == 1 or quant == gguf.GGMLQuantizationType.F32:
            writer.add_tensor(_gguf_name(name), w.astype(np.float32))
        else:
            data = gguf.quants.quantize(w, quant)
            writer.add_tensor(_gguf_name(name), data, raw_dtype=quant)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def write_raw_gguf(
    path: Path, architecture: str = "llama", tensors: dict[str, tuple[str, int]] | None = None
) -> Path:
    """A GGUF with only ``general.architecture`` and ``tensors`` = {name: (type, elements)}
    (zero bytes of the right size): enough for the header checks, not for a model."""
    import gguf

    writer = gguf.GGUFWriter(str(path), architecture)
    for name, (qtype, elements) in (tensors or {"token_embd.weight": ("F32", 64)}).items():
        quant = gguf.GGMLQuantizationType[qtype]
        block, size = gguf.GGML_QUANT_SIZES[quant]
        raw = np.zeros((1, elements // block * size), dtype=np.uint8)
        writer.add_tensor(name, raw, raw_dtype=quant)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
