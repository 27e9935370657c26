"""Tiny students built offline: word-level tokenizers (with and without an added BOS) and
2-layer Llama / GPT-2 models from configs, so scoring tests run in seconds without weights."""

from __future__ import annotations

import re

import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors

from reflection_assets.scoring.templates import ALPACA_INPUT, ALPACA_NO_INPUT, REVERSE_PROMPT, VICUNA_INPUT

SPECIALS = ["<unk>", "<pad>", "<s>", "</s>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<s> {{ m['role'] }} : {{ m['content'] }} </s> {% endfor %}"
    "{% if add_generation_prompt %}<s> assistant :{% endif %}"
)
CORPUS = " ".join(
    [
        ALPACA_INPUT,
        ALPACA_NO_INPUT,
        VICUNA_INPUT,
        REVERSE_PROMPT,
        "system user assistant System User Assistant",
        "Give three tips for staying healthy . Eat well , sleep enough and exercise daily .",
        "Translate the sentence into French . The cat sleeps . Le chat dort .",
        "Name a colour . Blue is a colour . What is two plus two ? Four .",
        "one two three four five six seven eight nine ten eleven twelve",
    ]
)


def word_vocab(text: str = CORPUS) -> dict[str, int]:
    words = sorted(set(re.findall(r"\w+|[^\w\s]+", text)))
    return {token: index for index, token in enumerate(SPECIALS + [w for w in words if w not in SPECIALS])}


def build_tokenizer(add_bos: bool, chat: bool = False):
    """A word-level tokenizer; `add_bos` mimics Llama (True) or GPT-2 / SmolLM2 (False)."""
    from transformers import PreTrainedTokenizerFast

    vocab = word_vocab()
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    if add_bos:
        backend.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", vocab["<s>"])])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>"
    )
    if chat:
        tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def tiny_llama(vocab_size: int, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
        bos_token_id=2, eos_token_id=3, pad_token_id=1, tie_word_embeddings=False,
    )  # fmt: skip
    return LlamaForCausalLM(config).eval()


def tiny_gpt2(vocab_size: int, seed: int = 0):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=vocab_size, n_embd=32, n_layer=2, n_head=4, n_positions=512, bos_token_id=2, eos_token_id=3
    )
    return GPT2LMHeadModel(config).eval()
