"""Tiny offline models for tests: a byte-level BPE tokenizer trained on a few sentences and
Llama models of a few thousand parameters, built and saved inside the test session."""

from __future__ import annotations

from pathlib import Path

import torch

SENTENCES = [
    "The cat sat on the mat.",
    "A dog runs in the park and the cat sleeps.",
    "Alice has 3 apples and Bob has 4 apples. How many apples? #### 7",
    "Dialogue: Ana: hi Ben! Ben: hello Ana.\nSummary: Ana and Ben greet each other.",
    "To open a jar, twist the lid. To cut paper, use scissors.",
    "Question: what color is the sky? Answer: blue",
    "one two three four five six seven eight nine ten",
    "0 1 2 3 4 5 6 7 8 9 10 11 12 + - = ? ! , . : ; ' \"",
]


def make_tokenizer(vocab_size: int = 320):
    """A GPT-2-style byte-level BPE tokenizer with <s>, </s>, <pad> specials."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<pad>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(SENTENCES * 4, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>"
    )


def make_llama(tokenizer, *, hidden: int = 32, layers: int = 2, seed: int = 0, tied: bool = False):
    """A Llama with random weights, untied unless ``tied`` (a tied lm_head + LoRA breaks
    merging; tied bases are built only to test that compatlm handles them, as SmolLM2 is)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=tied,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(cfg).eval()


def save_base(path: Path, tokenizer, *, hidden: int = 32, layers: int = 2, seed: int = 0) -> Path:
    model = make_llama(tokenizer, hidden=hidden, layers=layers, seed=seed)
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    return path


def save_lora(base_dir: Path, path: Path, *, seed: int = 0, r: int = 4, targets=None) -> Path:
    """A LoRA adapter with random (non-zero) A and B so it changes the model's outputs."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(base_dir)
    cfg = LoraConfig(
        r=r,
        lora_alpha=2 * r,
        target_modules=targets or ["q_proj", "k_proj", "v_proj", "o_proj"],
        lora_dropout=0.0,
    )
    model = get_peft_model(base, cfg)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    model.save_pretrained(path)
    return path


def prediction_line(i: int, role: str, parsed: int, **over) -> dict:
    """A schema-1 multiple-choice prediction line of example ``ex{i}`` (target 0; ``parsed`` is
    the chosen answer), with ``over`` replacing fields: the rows compare tests are built from."""
    row = {
        "schema_version": 1,
        "task": "demo_mc",
        "kind": "multiple_choice",
        "role": role,
        "model": f"{role}-base+{role}-adapter",
        "example_id": f"ex{i}",
        "example_hash": f"e{i}",
        "prompt_hash": f"p{i}",
        "target": 0,
        "output": f"choice {parsed}",
        "parsed": parsed,
        "correct": parsed == 0,
        "score": 0.6 if parsed == 0 else 0.3,
        "margin": 1.0,
        "loglikelihoods": None,
        "choice_lengths": None,
        "metric": "acc",
        "slice": "a" if i < 5 else "b",
    }
    row.update(over)
    return row
