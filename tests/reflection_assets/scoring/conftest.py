"""Fixtures: tiny students (see scoring_tiny) so scoring tests run in seconds without weights."""

from __future__ import annotations

import pytest
from scoring_tiny import build_tokenizer, tiny_gpt2, tiny_llama

from reflection_assets.scoring.student import Student


@pytest.fixture(scope="session")
def bos_tokenizer():
    return build_tokenizer(add_bos=True)


@pytest.fixture(scope="session")
def nobos_tokenizer():
    return build_tokenizer(add_bos=False)


@pytest.fixture(scope="session")
def chat_tokenizer():
    return build_tokenizer(add_bos=False, chat=True)


@pytest.fixture()
def llama_student(bos_tokenizer) -> Student:
    return Student(tiny_llama(len(bos_tokenizer)), bos_tokenizer, "tiny-llama")


@pytest.fixture()
def gpt2_student(nobos_tokenizer) -> Student:
    return Student(tiny_gpt2(len(nobos_tokenizer)), nobos_tokenizer, "tiny-gpt2")


@pytest.fixture()
def chat_student(chat_tokenizer) -> Student:
    return Student(tiny_llama(len(chat_tokenizer)), chat_tokenizer, "tiny-chat")
