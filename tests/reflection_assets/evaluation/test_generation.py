import pytest

from reflection_assets.evaluation.generation import GenerationEngine, GenerationRequest, left_padded

PROMPTS = ["Explain photosynthesis.", "Plants use light. Explain photosynthesis in detail.", "[End]", "Plants"]


def requests_for(tokenizer, adapters, max_new_tokens=12):
    ids = [tuple(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in PROMPTS]
    return [GenerationRequest(ids[k % len(ids)], max_new_tokens, adapter) for k, adapter in enumerate(adapters)]


def test_mixed_adapter_batch_equals_per_adapter_batches(tiny_peft):
    """One left-padded greedy batch mixing base and two adapters gives, row for row, what the same
    batch gives with each adapter alone (fp32)."""
    model, tokenizer = tiny_peft
    adapters = [None, "first", "second", "first", None, "second", "second", None]
    engine = GenerationEngine(model, tokenizer, batch_tokens=10_000)  # one batch
    mixed = engine.generate(requests_for(tokenizer, adapters))
    assert len(engine.batches(requests_for(tokenizer, adapters))) == 1
    for adapter in (None, "first", "second"):
        alone = engine.generate(requests_for(tokenizer, [adapter] * len(adapters)))
        for k, name in enumerate(adapters):
            if name == adapter:
                assert mixed[k].token_ids == alone[k].token_ids, (k, adapter)
    # The adapters change what is generated (otherwise the equality above would prove nothing).
    # Rows 1 and 5 share a prompt (first vs second adapter), as do rows 3 and 7 (first vs base).
    assert mixed[1].token_ids != mixed[5].token_ids
    assert mixed[3].token_ids != mixed[7].token_ids


def test_outputs_come_back_in_request_order_across_batches(tiny_peft):
    model, tokenizer = tiny_peft
    adapters = [None, "first", "second", None, "first", "second"]
    one_batch = GenerationEngine(model, tokenizer, batch_tokens=10_000).generate(requests_for(tokenizer, adapters))
    small = GenerationEngine(model, tokenizer, batch_tokens=40)
    assert len(small.batches(requests_for(tokenizer, adapters))) > 1
    many = small.generate(requests_for(tokenizer, adapters))
    assert [o.prompt_tokens for o in many] == [len(r.prompt_ids) for r in requests_for(tokenizer, adapters)]
    assert all(o.new_tokens == len(o.token_ids) <= 12 for o in many)
    assert all(o.finish_reason in ("stop", "length") for o in many)
    # Different padding widths give the same greedy tokens in fp32 for this tiny model.
    assert [o.token_ids for o in many] == [o.token_ids for o in one_batch]


def test_an_adapter_on_a_plain_model_is_refused():
    from tests.support.tiny_lm import tiny_model, tiny_tokenizer

    tokenizer = tiny_tokenizer()
    with pytest.raises(ValueError, match="not a PeftModel"):
        GenerationEngine(tiny_model(tokenizer), tokenizer).generate([GenerationRequest((5, 6), 2, "first")])


def test_left_padding():
    ids, mask = left_padded([[1, 2, 3], [4]], pad_id=0)
    assert ids == [[1, 2, 3], [0, 0, 4]] and mask == [[1, 1, 1], [0, 0, 1]]
