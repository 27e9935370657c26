"""A tiny causal LM and tokenizer built offline from configs, for fast tests of the local teacher.

The tokenizer is a byte-level BPE trained in-process on the prompts' own vocabulary, with a
ChatML-like template; the model is a randomly initialised 2-layer Llama (seeded).
"""

from __future__ import annotations

from typing import Any

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIALS = ["<|im_start|>", "<|im_end|>", "<pad>"]


def bpe_tokenizer(corpus: list[str], vocab_size: int) -> Any:
    """A byte-level BPE trained in-process on `corpus`, with the ChatML-like template (offline).

    scripts/gpu_check.py builds its tokenizer with this too (it imports the repository's tests/).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|im_end|>", pad_token="<pad>"
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def tiny_tokenizer() -> Any:
    from reflection_assets.teacher.prompts import INSTRUCTION_TASK, RESPONSE_TASK, SYSTEM_PROMPT

    corpus = [INSTRUCTION_TASK, RESPONSE_TASK, SYSTEM_PROMPT, "Explain photosynthesis. Plants use light. [End]"] * 4
    return bpe_tokenizer(corpus, vocab_size=400)


def tiny_model(tokenizer: Any, seed: int = 0) -> Any:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    return LlamaForCausalLM(config).eval()


def tiny_teacher(batch_size: int = 4) -> Any:
    from resources.teacher_local import TransformersTeacher

    tokenizer = tiny_tokenizer()
    return TransformersTeacher.from_loaded(tiny_model(tokenizer), tokenizer, name="tiny-llama", batch_size=batch_size)


def forced_teacher(token: str = "[End]", batch_size: int = 4) -> Any:
    """A tiny teacher that always writes `token` (one vocabulary entry): deterministic stops."""
    import torch

    from resources.teacher_local import TransformersTeacher

    tokenizer = tiny_tokenizer()
    tokenizer.add_tokens([token])
    model = tiny_model(tokenizer)
    head = torch.nn.Linear(model.config.hidden_size, len(tokenizer), bias=True)
    with torch.no_grad():
        head.weight.zero_()
        head.bias.fill_(-10.0)
        head.bias[tokenizer.convert_tokens_to_ids(token)] = 10.0
    model.lm_head = head
    return TransformersTeacher.from_loaded(model, tokenizer, name=f"forced-{token}", batch_size=batch_size)
