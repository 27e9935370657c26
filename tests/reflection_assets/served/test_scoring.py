"""Served IFD / r-IFD (`ServedLossEngine`) against a loopback vLLM that runs the real bundled student.

The server (tests/support/fake_vllm.py) computes prompt log-probabilities with the same fp32 weights,
so the served scores must equal the in-process ones to float noise; any slip in how sequences are
sent or losses are read back (an off-by-one in the scored span, a wrong token) shows up as a
difference far larger than the tolerance.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from reflection_assets.demo_data import DEMO_TRAIN_PATH
from reflection_assets.http_retries import CallFailed, RetryPolicy
from reflection_assets.ingest.readers import read_dataset
from reflection_assets.scoring import statuses
from reflection_assets.scoring.cache import StudentScoreCache
from reflection_assets.scoring.metrics import PairScore
from reflection_assets.scoring.scorer import ScoringConfig, plan_pairs, score_pairs, settings_for, unique_sequences
from reflection_assets.scoring.student import Student, load_student
from reflection_assets.served.client import PROBE_IDS, ServedModelError, ServedStudent
from reflection_assets.served.scoring import served_student
from support.fake_vllm import FakeVllm

pytestmark = pytest.mark.slow  # loads the bundled model (once per module)

FLOATS = ("loss_cond", "loss_alone", "ifd_ppl", "ifd_loss", "rloss_cond", "rloss_alone", "rifd_ppl", "rifd_loss")
FAST = RetryPolicy(max_concurrency=2, max_attempts=4, backoff_initial_s=0.01, backoff_max_s=0.05)


@pytest.fixture(scope="module")
def fake():
    with FakeVllm() as server:
        yield server


@pytest.fixture(scope="module")
def pairs() -> list:
    return read_dataset(DEMO_TRAIN_PATH).accepted[:8]


@pytest.fixture(scope="module")
def in_process() -> Student:
    return load_student("bundled", device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def reference(in_process: Student, pairs: list) -> list[PairScore]:
    return score_pairs(pairs, in_process)


def served_by(fake: FakeVllm, policy: RetryPolicy = FAST, api_key: str | None = None) -> Student:
    return served_student("bundled", ServedStudent(fake.url, "smollm2", api_key, policy))


def scoring_requests(server: FakeVllm) -> list:
    """Completions sent for sequences (not the fingerprint's probe, one per load)."""
    return [s for s in server.requests("/v1/completions") if tuple(s.body["prompt"]) != PROBE_IDS]


def assert_same(served: list[PairScore], reference: list[PairScore], rel: float = 1e-4) -> float:
    """Equal ids, statuses and token counts; every score within `rel`. Returns the largest relative difference."""
    assert [s.id for s in served] == [r.id for r in reference]
    worst = 0.0
    for got, want in zip(served, reference):
        assert (got.ifd_status, got.rifd_status) == (want.ifd_status, want.rifd_status), got.id
        assert (got.n_response_tokens, got.n_instruction_tokens) == (want.n_response_tokens, want.n_instruction_tokens)
        for name in FLOATS:
            a, b = getattr(got, name), getattr(want, name)
            if b is None:
                assert a is None, (got.id, name)
                continue
            assert a == pytest.approx(b, rel=rel, abs=1e-6), (got.id, name)
            worst = max(worst, abs(a - b) / max(abs(b), 1e-12))
    return worst


def test_served_ifd_and_rifd_equal_the_in_process_scores(fake, pairs, reference) -> None:
    before = fake.count()
    student = served_by(fake)
    assert student.model is None and student.describe() == f"vLLM: smollm2 served at {fake.url}"
    assert student.fingerprint.startswith("served-smollm2-")
    scores = score_pairs(pairs, student)
    worst = assert_same(scores, reference)
    print(f"largest relative difference served vs in-process: {worst:.2e}")
    assert sum(s.ifd_status == statuses.OK for s in reference) >= 6  # the comparison compared numbers
    assert sum(s.rifd_status == statuses.OK for s in reference) >= 6
    # One request per distinct sequence, each a token-id prompt asking for the prompt's log-probabilities.
    seqs = unique_sequences(plan_pairs(student, settings_for(student, ScoringConfig()), pairs))
    sent = fake.requests("/v1/completions")[before:]
    probes = [s for s in sent if tuple(s.body["prompt"]) == PROBE_IDS]  # the fingerprint's one probe
    sent = [s for s in sent if tuple(s.body["prompt"]) != PROBE_IDS]
    assert len(probes) == 1
    assert len(sent) == len(seqs) == student.engine.forward_calls
    assert {tuple(s.body["prompt"]) for s in sent} == {seq.context + seq.scored for seq in seqs}
    assert all(s.body["prompt_logprobs"] == 0 and s.body["model"] == "smollm2" for s in sent)


def test_a_server_without_prompt_logprobs_stops_the_run(pairs) -> None:
    with FakeVllm(prompt_logprobs=False) as server:  # found at load, by the fingerprint's probe
        with pytest.raises(ServedModelError, match="prompt_logprobs"):
            served_by(server)
    with FakeVllm() as server:  # and should a server stop returning them mid-run
        student = served_by(server)
        server.prompt_logprobs = False
        with pytest.raises(ServedModelError, match="prompt_logprobs"):
            score_pairs(pairs[:2], student)


def test_a_wrong_model_name_names_what_is_served(fake) -> None:
    sent = fake.count("/v1/completions")
    with pytest.raises(ServedModelError, match=r"does not serve 'smollm3'.*\['smollm2'\]"):
        served_student("bundled", ServedStudent(fake.url, "smollm3", policy=FAST))
    assert fake.count("/v1/completions") == sent  # refused before anything was scored


def test_a_different_local_tokenizer_is_refused(fake, tmp_path: Path) -> None:
    from support.tiny_lm import tiny_model, tiny_tokenizer

    folder = tmp_path / "other-student"
    tokenizer = tiny_tokenizer()
    tiny_model(tokenizer).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    sent = fake.count("/tokenize")
    with pytest.raises(ServedModelError, match="does not tokenize like the served model 'smollm2'"):
        served_student(str(folder), ServedStudent(fake.url, "smollm2", policy=FAST))
    assert fake.count("/tokenize") == sent + 1


def test_429_is_retried_within_the_policy_and_honours_retry_after(pairs, reference) -> None:
    with FakeVllm(throttle_first=3, retry_after="0.3") as server:
        student = served_by(server)  # the fingerprint's probe meets the 429s first
        scores = score_pairs(pairs[:2], student)
        assert_same(scores, reference[:2])
        engine = student.engine
        counter = engine.server.counter
        assert counter.retries == 3 and counter.requests == engine.forward_calls + 1 + 3
        sent = server.requests("/v1/completions")
        assert len(sent) == counter.requests and [s.status for s in sent].count(429) == 3
        for first in (s for s in sent if s.status == 429):  # each retry waited for the Retry-After
            retry = next(s for s in sent if s.at > first.at and s.body["prompt"] == first.body["prompt"])
            assert retry.at - first.at >= 0.3


def test_a_server_that_keeps_refusing_stops_after_max_attempts(pairs) -> None:
    policy = RetryPolicy(max_concurrency=1, max_attempts=3, backoff_initial_s=0.01, backoff_max_s=0.02)
    with FakeVllm(throttle_first=10**6) as server:
        with pytest.raises(CallFailed, match="gave up after 3 attempts"):
            served_by(server, policy)  # the fingerprint's probe, the first completion sent
        per_prompt: dict[tuple, int] = {}
        for seen in server.requests("/v1/completions"):
            per_prompt[tuple(seen.body["prompt"])] = per_prompt.get(tuple(seen.body["prompt"]), 0) + 1
        assert max(per_prompt.values()) == 3


def test_a_sequence_longer_than_the_server_takes_fails_alone(pairs, reference, caplog) -> None:
    with FakeVllm() as probe:  # where to put the limit: between the lengths the pairs produce
        student = served_by(probe)
    plans = plan_pairs(student, settings_for(student, ScoringConfig()), pairs)
    lengths = sorted({seq.length for seq in unique_sequences(plans)})
    limit = lengths[len(lengths) // 2]  # vLLM also needs room for the one token asked for

    def refused(plan) -> bool:
        return plan.cond is not None and (plan.cond.length >= limit or plan.alone.length >= limit)

    caplog.set_level(logging.WARNING, logger="reflection_assets.served.scoring")
    with FakeVllm(max_model_len=limit) as server:
        scores = score_pairs(pairs, served_by(server))
        assert [s.status for s in server.requests("/v1/completions")].count(400) > 0
    assert "refused" in caplog.text
    expected_refused = 0
    for score, want, (ifd_plan, rifd_plan) in zip(scores, reference, plans):
        for status, value, want_status, want_value, plan in (
            (score.ifd_status, score.ifd_ppl, want.ifd_status, want.ifd_ppl, ifd_plan),
            (score.rifd_status, score.rifd_ppl, want.rifd_status, want.rifd_ppl, rifd_plan),
        ):
            if refused(plan):
                expected_refused += 1
                assert status == statuses.error(statuses.SERVER_REFUSED) and value is None
            else:
                assert status == want_status and (value == pytest.approx(want_value, rel=1e-4) if value else True)
    assert 0 < expected_refused < 2 * len(pairs)  # some refused, some scored


def test_the_cache_keeps_served_and_in_process_scores_apart(pairs, in_process, reference, tmp_path: Path) -> None:
    cache = StudentScoreCache(tmp_path / "scores.duckdb")
    assert_same(score_pairs(pairs[:4], in_process, cache=cache), reference[:4])
    stored = cache.count()
    assert stored > 0
    with FakeVllm() as server:
        first = score_pairs(pairs[:4], served_by(server), cache=cache)
        sent = len(scoring_requests(server))
        assert sent == stored  # the in-process losses were not taken for served ones
        assert cache.count() == 2 * stored
        second = score_pairs(pairs[:4], served_by(server), cache=cache)
        assert len(scoring_requests(server)) == sent  # all from the cache
    assert_same(first, reference[:4]) and assert_same(second, reference[:4])
    assert [s.to_dict() for s in second] == [s.to_dict() for s in first]
    with duckdb.connect(str(tmp_path / "scores.duckdb"), read_only=True) as connection:
        kinds = connection.execute("SELECT DISTINCT dtype, device_kind FROM student_scores ORDER BY 1").fetchall()
    assert kinds == [("float32", "cpu"), ("served", "http")]


def test_score_command_on_a_served_student(pairs, reference, tmp_path: Path, monkeypatch, capsys) -> None:
    from reflection_assets.cli import main
    from reflection_assets.commands.score import read_pairs

    secret = "sk-student-secret-123"
    source = tmp_path / "pairs.jsonl"
    source.write_text("".join(json.dumps({"id": f"row{i}", "instruction": p.instruction, "input": p.input,
                                          "output": p.output}) + "\n" for i, p in enumerate(pairs[:4])))
    output = tmp_path / "scores.jsonl"
    with FakeVllm(api_key=secret) as server:
        monkeypatch.setenv("REFLECTION_STUDENT_BASE_URL", server.url)
        monkeypatch.setenv("REFLECTION_STUDENT_MODEL", "smollm2")
        monkeypatch.setenv("REFLECTION_STUDENT_API_KEY", secret)
        monkeypatch.setenv("REFLECTION_STUDENT_CONCURRENCY", "2")
        rc = main(["score", "--input", str(source), "--output", str(output), "--student", "bundled"])
        seen, url = server.requests(), server.url
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert f"student: vLLM: smollm2 served at {url}" in captured.err
    assert server.count() > 0 and {s.auth for s in seen} == {f"Bearer {secret}"} and {s.status for s in seen} == {200}
    text = output.read_text()
    assert secret not in captured.out + captured.err + text
    rows = [PairScore(**json.loads(line)) for line in text.splitlines()]
    # The same texts as the reference's first four pairs (plain pairs: no system prompt, no history).
    assert [(p.instruction, p.input, p.output) for p in read_pairs(source)] == [
        (p.instruction, p.input, p.output) for p in pairs[:4] if not p.system and not p.history]
    assert_same(rows, [dataclasses.replace(score, id=f"row{i}") for i, score in enumerate(reference[:4])])


def test_the_command_says_what_is_wrong_with_the_served_setup(tmp_path: Path, monkeypatch, capsys) -> None:
    from reflection_assets.cli import main

    source = tmp_path / "pairs.jsonl"
    source.write_text(json.dumps({"instruction": "Say hi.", "output": "Hi."}) + "\n")
    monkeypatch.setenv("REFLECTION_STUDENT_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.delenv("REFLECTION_STUDENT_MODEL", raising=False)
    rc = main(["score", "--input", str(source), "--output", str(tmp_path / "o.jsonl"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "REFLECTION_STUDENT_MODEL" in err and "Traceback" not in err


def test_raw_ifd_scores_materialize_on_a_served_student(
    pairs, in_process, dagster_instance, tmp_path: Path, caplog
) -> None:
    import mlflow

    from reflection_assets.defs.assets.common import pairs_from_frame
    from reflection_assets.defs.definitions import ASSET_MODULES
    from reflection_assets.defs.deployment import build_resources
    from reflection_assets.defs.partitions import DATASETS
    from reflection_assets.ingest.registry import DatasetSource, register_source
    from reflection_assets.paths import warehouse_path
    from resources.student import StudentModel
    from resources.tracking import default_tracking_uri

    source = tmp_path / "tiny.jsonl"
    source.write_text("".join(json.dumps({"instruction": p.instruction, "input": p.input, "output": p.output}) + "\n"
                              for p in pairs[:3]))
    register_source(warehouse_path(), "tiny", DatasetSource(str(source)))
    dagster_instance.add_dynamic_partitions(DATASETS, ["tiny"])
    secret = "sk-dagster-secret-456"
    with FakeVllm(api_key=secret) as server:
        student = StudentModel(base_url=server.url, served_model="smollm2", api_key=secret, max_concurrency=2)
        result = dg.materialize(
            dg.load_assets_from_modules(ASSET_MODULES),
            selection=["raw_instructions", "rejected_rows", "raw_ifd_scores"], partition_key="tiny",
            instance=dagster_instance, resources={**build_resources(), "student": student},
        )
        sent, url = server.count(), server.url
    assert result.success and sent > 0
    messages = [entry.user_message for entry in dagster_instance.all_logs(result.run_id)]
    assert any(f"student: vLLM: smollm2 served at {url}" in m for m in messages)
    assert not any(secret in m for m in messages)
    meta = result.asset_materializations_for_node("raw_ifd_scores")[0].metadata
    assert meta["tokens_computed"].value > 0
    mlflow.set_tracking_uri(default_tracking_uri())
    params = mlflow.get_run(meta["mlflow_run_id"].value).data.params
    assert params["base_url"] == url and params["served_model"] == "smollm2"
    assert secret not in json.dumps(params)

    with duckdb.connect(str(warehouse_path()), read_only=True) as connection:
        raw = connection.execute("SELECT * FROM raw_instructions").df()
        served = connection.execute("SELECT * FROM raw_ifd_scores").df().set_index("row_id")
    for want in score_pairs(pairs_from_frame(raw), in_process):
        got = served.loc[want.id]
        assert (got["ifd_status"], got["rifd_status"]) == (want.ifd_status, want.rifd_status)
        for name in ("ifd_ppl", "rifd_ppl", "loss_cond", "rloss_alone"):
            if getattr(want, name) is not None:
                assert float(got[name]) == pytest.approx(getattr(want, name), rel=1e-4)
