"""`ServedStudent` against a loopback vLLM running the real bundled student (tests/support/fake_vllm.py):
what the server serves, prompt log-probabilities and greedy text equal to the model's own, LoRA routes,
settings from the environment (CLI and Dagster deployment alike) and the API key kept secret."""

from __future__ import annotations

import copy

import dagster as dg
import httpx
import pytest

from reflection_assets.http_retries import CallFailed, RetryPolicy, run_sync
from reflection_assets.served.client import (
    ENV_API_KEY,
    ENV_BASE_URL,
    ENV_MODEL,
    ServedModelError,
    ServedStudent,
    mean_nll,
    read_prompt_logprobs,
)
from resources.student import StudentModel
from support.fake_vllm import FakeVllm, base_model

pytestmark = pytest.mark.slow  # loads the bundled model (once per module)

FAST = RetryPolicy(max_concurrency=2, max_attempts=2, backoff_initial_s=0.01, backoff_max_s=0.02)
PROMPT = "Plants turn light into chemical energy. Photosynthesis happens in the chloroplasts."


@pytest.fixture(scope="module")
def fake():
    with FakeVllm() as server:
        yield server


@pytest.fixture(scope="module")
def adapter_dir(tmp_path_factory) -> str:
    """A LoRA adapter on the bundled student whose weights change the outputs (B is not zero)."""
    import torch
    from peft import LoraConfig, get_peft_model

    model, _, _ = base_model()
    torch.manual_seed(0)
    peft = get_peft_model(copy.deepcopy(model), LoraConfig(r=4, lora_alpha=32, target_modules=["q_proj", "v_proj"],
                                                           init_lora_weights=False))
    folder = tmp_path_factory.mktemp("adapter") / "lora-a"
    peft.save_pretrained(folder)
    return str(folder)


def ids_of(text: str) -> list[int]:
    _, tokenizer, _ = base_model()
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def local_logprobs(model, ids: list[int]) -> list[float]:
    import torch

    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([ids])).logits[0].float()
    rows = torch.log_softmax(logits, dim=-1)
    return [float(rows[i - 1, ids[i]]) for i in range(1, len(ids))]


def served_logprobs(server: ServedStudent, ids: list[int], model: str | None = None) -> list[float | None]:
    async def one(client, _):
        return await server.prompt_logprobs(client, ids, model)

    return server.map(one, [None])[0]


# -- what the server serves ---------------------------------------------------------------------------


def test_identity_and_fingerprint_follow_what_is_served(fake) -> None:
    student = ServedStudent(fake.url, "smollm2", policy=FAST)
    _, _, folder = base_model()
    assert student.identity() == {"backend": "vllm", "model": "smollm2", "root": folder, "max_model_len": 2048}
    fingerprint = student.fingerprint()
    assert fingerprint.startswith("served-smollm2-") and fingerprint == student.fingerprint()
    with FakeVllm(max_model_len=1024) as other:  # the same weights served differently: another cache scope
        assert ServedStudent(other.url, "smollm2", policy=FAST).fingerprint() != fingerprint
    with FakeVllm(served_name="student") as renamed:
        assert ServedStudent(renamed.url, "student", policy=FAST).fingerprint() != fingerprint
        with pytest.raises(ServedModelError, match=r"does not serve 'smollm2' \(it serves \['student'\]\)"):
            ServedStudent(renamed.url, "smollm2", policy=FAST).identity()


def test_the_fingerprint_tells_apart_the_same_name_served_in_another_dtype(fake, monkeypatch) -> None:
    """/v1/models does not say bf16 or fp32: the probe's log-probability does."""
    student = ServedStudent(fake.url, "smollm2", policy=FAST)
    probe = student.probe()
    assert probe == student.probe() and probe < 0  # one lone request, the same answer each time
    fingerprint = student.fingerprint()
    monkeypatch.setattr(ServedStudent, "probe", lambda self: round(probe + 0.05, 2))  # bf16 moves it more than this
    assert student.fingerprint() != fingerprint


def test_an_unreachable_server_is_a_clear_error() -> None:
    student = ServedStudent("http://127.0.0.1:9/v1", "smollm2", "sk-unreachable", RetryPolicy(max_attempts=1))
    with pytest.raises(ServedModelError, match="cannot reach the student server") as raised:
        student.models()
    assert "sk-unreachable" not in str(raised.value)


def test_the_tokenizer_check_compares_with_the_servers(fake) -> None:
    _, tokenizer, _ = base_model()
    sent = fake.count("/tokenize")
    note = ServedStudent(fake.url, "smollm2", policy=FAST).check_tokenizer(tokenizer)
    assert note == "the local tokenizer matches the server's" and fake.count("/tokenize") == sent + 1
    request = fake.requests("/tokenize")[-1].body
    assert request["model"] == "smollm2" and request["add_special_tokens"] is False

    class Shifted:  # a tokenizer that agrees on everything but one id
        def __call__(self, text, add_special_tokens=True):
            ids = tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"]
            return {"input_ids": [ids[0] + 1, *ids[1:]]}

    with pytest.raises(ServedModelError, match="does not tokenize like the served model"):
        ServedStudent(fake.url, "smollm2", policy=FAST).check_tokenizer(Shifted())


# -- completions ----------------------------------------------------------------------------------------


def test_prompt_logprobs_are_the_models_own(fake) -> None:
    model, _, _ = base_model()
    ids = ids_of(PROMPT)
    got = served_logprobs(ServedStudent(fake.url, "smollm2", policy=FAST), ids)
    assert got[0] is None and len(got) == len(ids)
    assert got[1:] == pytest.approx(local_logprobs(model, ids), abs=1e-4)
    assert mean_nll(got, 3) == pytest.approx(-sum(got[3:]) / (len(ids) - 3))
    body = fake.requests("/v1/completions")[-1].body
    assert body == {"model": "smollm2", "prompt": ids, "max_tokens": 1, "temperature": 0.0, "prompt_logprobs": 0}


def test_read_prompt_logprobs_checks_what_it_reads() -> None:
    entry = {"5": {"logprob": -1.5, "rank": 2, "decoded_token": "x"}}
    assert read_prompt_logprobs({"choices": [{"prompt_logprobs": [None, entry]}]}, [4, 5]) == [None, -1.5]
    with pytest.raises(ServedModelError, match="2 tokens"):
        read_prompt_logprobs({"choices": [{"prompt_logprobs": [None]}]}, [4, 5])
    with pytest.raises(ServedModelError, match="token 6"):
        read_prompt_logprobs({"choices": [{"prompt_logprobs": [None, entry]}]}, [4, 6])
    with pytest.raises(ServedModelError, match="prompt_logprobs"):
        read_prompt_logprobs({"choices": [{"text": "x"}]}, [4, 5])


def test_generate_is_the_models_greedy_continuation(fake) -> None:
    import torch

    model, tokenizer, _ = base_model()
    ids = list(tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                             add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"])
    server = ServedStudent(fake.url, "smollm2", policy=FAST)

    async def run(client, budget):
        return await server.generate(client, ids, budget)

    short, long = server.map(run, [3, 48])
    with torch.inference_mode():
        out = model.generate(torch.tensor([ids]), max_new_tokens=48, do_sample=False,
                             eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.eos_token_id)
    new = [int(t) for t in out[0, len(ids):]]
    assert short.finish_reason == "length" and short.new_tokens == 3
    assert short.text == tokenizer.decode(new[:3], skip_special_tokens=True)
    assert long.text == tokenizer.decode(new, skip_special_tokens=True) and "Paris" in long.text
    assert long.new_tokens == len(new)
    assert long.finish_reason == ("stop" if new[-1] == tokenizer.eos_token_id else "length")


def test_lm_eval_style_requests_string_and_batched_prompts(fake) -> None:
    """What lm-eval's local-completions sends: string prompts, batches, `logprobs` with `echo`."""
    model, _, _ = base_model()
    prompts = ["The capital of France is", "Two plus two equals"]
    body = {"model": "smollm2", "prompt": prompts, "max_tokens": 1, "temperature": 0, "logprobs": 1, "echo": True}
    data = httpx.post(f"{fake.url}/completions", json=body, timeout=60).json()
    assert [c["index"] for c in data["choices"]] == [0, 1]
    for prompt, choice in zip(prompts, data["choices"]):
        ids = ids_of(prompt)
        logprobs = choice["logprobs"]
        assert choice["text"].startswith(prompt) and len(logprobs["tokens"]) == len(ids) + 1
        assert logprobs["token_logprobs"][0] is None
        assert logprobs["token_logprobs"][1 : len(ids)] == pytest.approx(local_logprobs(model, ids), abs=1e-4)
        # greedy: the generated token is the most likely one
        assert logprobs["token_logprobs"][-1] == pytest.approx(max(logprobs["top_logprobs"][-1].values()))
    assert data["usage"]["prompt_tokens"] == sum(len(ids_of(p)) for p in prompts)


def test_a_prompt_longer_than_max_model_len_is_refused_alone() -> None:
    with FakeVllm(max_model_len=8) as server:
        student = ServedStudent(server.url, "smollm2", policy=FAST)
        with pytest.raises(CallFailed) as raised:
            served_logprobs(student, ids_of(PROMPT))
        assert raised.value.refused and "maximum context length is 8" in str(raised.value)
        assert served_logprobs(student, ids_of("Plants grow."))[0] is None  # a short one still goes through
        assert server.count() == 2  # a refusal is not retried


# -- LoRA adapters --------------------------------------------------------------------------------------


def test_adapters_load_at_run_time_and_route_requests(adapter_dir) -> None:
    from peft import PeftModel

    model, _, _ = base_model()
    ids = ids_of(PROMPT)
    base = local_logprobs(model, ids)
    with FakeVllm() as server:
        student = ServedStudent(server.url, "smollm2", policy=FAST)
        assert student.load_adapter("lora-a", adapter_dir) is None
        cards = {card["id"]: card for card in student.models()}
        assert cards["lora-a"]["root"] == adapter_dir and cards["lora-a"]["parent"] == "smollm2"
        assert cards["smollm2"]["parent"] is None
        assert "already been loaded" in student.load_adapter("lora-a", adapter_dir)
        through = served_logprobs(student, ids, model="lora-a")[1:]
        plain = served_logprobs(student, ids)[1:]
    assert plain == pytest.approx(base, abs=1e-4)  # the base model is untouched by the adapter
    expected = local_logprobs(PeftModel.from_pretrained(copy.deepcopy(model), adapter_dir).eval(), ids)
    assert through == pytest.approx(expected, abs=1e-4)
    assert max(abs(a - b) for a, b in zip(through, base)) > 0.05  # the adapter changed the numbers
    assert local_logprobs(model, ids) == pytest.approx(base, abs=1e-6)  # the shared base stays as it was


def test_adapters_given_at_start_and_a_server_without_runtime_loading(adapter_dir) -> None:
    with FakeVllm(adapters={"lora-a": adapter_dir}, runtime_lora=False) as server:
        student = ServedStudent(server.url, "smollm2", policy=FAST)
        assert {card["id"] for card in student.models()} == {"smollm2", "lora-a"}
        assert "VLLM_ALLOW_RUNTIME_LORA_UPDATING" in student.load_adapter("lora-b", adapter_dir)
        assert served_logprobs(student, ids_of("Plants grow."), model="lora-a")[0] is None


# -- settings and secrets -----------------------------------------------------------------------------


def test_from_env_reads_the_deployments_variables() -> None:
    assert ServedStudent.from_env({}) is None and ServedStudent.from_env({ENV_BASE_URL: "  "}) is None
    with pytest.raises(ServedModelError, match=ENV_MODEL):
        ServedStudent.from_env({ENV_BASE_URL: "http://127.0.0.1:9/v1"})
    with pytest.raises(ServedModelError, match="REFLECTION_STUDENT_CONCURRENCY"):
        ServedStudent.from_env({ENV_BASE_URL: "http://h/v1", ENV_MODEL: "m", "REFLECTION_STUDENT_CONCURRENCY": "x"})
    student = ServedStudent.from_env({
        ENV_BASE_URL: "http://h:8000/v1", ENV_MODEL: "smollm2", ENV_API_KEY: "sk-env-secret",
        "REFLECTION_STUDENT_CONCURRENCY": "3", "REFLECTION_STUDENT_TIMEOUT_S": "7.5",
        "REFLECTION_STUDENT_MAX_ATTEMPTS": "2",
    })
    assert (student.base_url, student.model, student.api_key) == ("http://h:8000/v1", "smollm2", "sk-env-secret")
    assert (student.policy.max_concurrency, student.policy.timeout_s, student.policy.max_attempts) == (3, 7.5, 2)
    assert student.server_root() == "http://h:8000"
    assert "sk-env-secret" not in repr(student) + student.describe()
    assert student.redact("key sk-env-secret here") == "key *** here"


def test_build_student_keeps_settings_as_env_vars(monkeypatch) -> None:
    from reflection_assets.defs.deployment import build_student

    assert build_student({}) == StudentModel(model="bundled")
    env = {ENV_BASE_URL: "http://127.0.0.1:9/v1", ENV_MODEL: "smollm2", ENV_API_KEY: "sk-deploy",
           "REFLECTION_STUDENT_CONCURRENCY": "4", "REFLECTION_STUDENT_TIMEOUT_S": "30"}
    student = build_student(env)
    assert student.base_url == dg.EnvVar(ENV_BASE_URL) and student.served_model == dg.EnvVar(ENV_MODEL)
    assert student.api_key == dg.EnvVar(ENV_API_KEY) and student.model == "bundled"
    assert student.max_concurrency == dg.EnvVar.int("REFLECTION_STUDENT_CONCURRENCY") and student.timeout_s == 30.0
    with pytest.raises(ServedModelError, match=ENV_MODEL):
        build_student({ENV_BASE_URL: "http://127.0.0.1:9/v1"})
    # Resolved the way Dagster resolves them at run time: from the process environment.
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    @dg.asset
    def probe(student: StudentModel) -> dict:
        server = student.served()
        return {"url": server.base_url, "model": server.model, "key": server.api_key,
                "concurrency": server.policy.max_concurrency, "repr": repr(student)}

    seen = dg.materialize([probe], resources={"student": build_student(env)}).output_for_node("probe")
    assert (seen["url"], seen["model"], seen["key"], seen["concurrency"]) == (
        "http://127.0.0.1:9/v1", "smollm2", "sk-deploy", 4)
    assert "sk-deploy" not in seen["repr"]


def test_the_api_key_is_a_bearer_token_and_never_in_messages() -> None:
    secret = "sk-client-secret-789"
    with FakeVllm(api_key=secret) as server:
        student = ServedStudent(server.url, "smollm2", secret, FAST)
        assert student.identity()["model"] == "smollm2"
        served_logprobs(student, ids_of("Plants grow."))
        assert {s.auth for s in server.requests()} == {f"Bearer {secret}"}
        wrong = ServedStudent(server.url, "smollm2", "sk-wrong-key", FAST)
        with pytest.raises(ServedModelError, match="HTTP 401") as raised:
            wrong.models()
        assert "sk-wrong-key" not in str(raised.value)


def test_run_sync_works_inside_a_running_loop() -> None:
    import asyncio

    async def inner() -> int:
        return 7

    async def outer() -> int:
        return run_sync(inner())

    assert asyncio.run(outer()) == 7


def test_an_unknown_model_in_a_request_is_refused(fake) -> None:
    body = {"model": "nope", "prompt": [1, 2], "max_tokens": 1}
    response = httpx.post(f"{fake.url}/completions", json=body, timeout=30)
    assert response.status_code == 404 and "does not exist" in response.json()["message"]
    assert httpx.post(f"{fake.root_url}/v1/nothing", json={}, timeout=30).status_code == 404


def test_the_fake_answers_a_repeated_prompt_from_memory_but_counts_it(fake) -> None:
    student = ServedStudent(fake.url, "smollm2", policy=FAST)
    ids = ids_of("A repeated prompt.")
    before = fake.count()
    assert served_logprobs(student, ids) == served_logprobs(student, ids)
    assert fake.count() == before + 2


def test_requests_in_flight_halve_when_the_server_pushes_back() -> None:
    from support.fault_server import FaultServer

    def ask(row: str):
        body = {"messages": [{"role": "user", "content": row}]}

        async def call(client: httpx.AsyncClient, _: int) -> dict:
            return await student.post(client, "chat/completions", body, parse=lambda data: data)

        return call

    with FaultServer(retry_after="0") as server:
        student = ServedStudent(server.url, "m", None, RetryPolicy(max_concurrency=8, initial_concurrency=8,
                                                                  backoff_initial_s=0.01, backoff_max_s=0.02))
        assert len(student.map(ask("ROW=calm hi"), list(range(16)))) == 16
        assert student.last_flow == {"peak_limit": 8, "push_backs": 0}
        assert len(student.map(ask("ROW=busy FAULT=429x3 hi"), list(range(16)))) == 16  # each push-back retried
    assert student.last_flow["push_backs"] >= 1
