"""Resources for a deployment, read from environment variables (through dg.EnvVar when set).

`build_teacher` is the one place that turns the environment into a teacher: the definitions,
the CLI and the tests all go through it, so they agree on what a setting means.
"""

from __future__ import annotations

import os
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import dagster as dg

from reflection_assets.object_tables import TABLES_URI_ENV
from reflection_assets.paths import warehouse_path
from reflection_assets.storage import FILES_URI_ENV, STORE_URL_ENV, storage_from_env
from reflection_assets.teacher.backend import TeacherError
from resources.judge import JudgeModel
from resources.object_tables_io import ObjectTablesIOManager
from resources.student import StudentModel
from resources.teacher import Teacher
from resources.teacher_http import OpenAICompatibleTeacher
from resources.teacher_local import TransformersTeacher
from resources.tracking import MlflowTracking
from resources.warehouse import Warehouse
from resources.warehouse_io import WarehouseIOManager

ENV_BASE_URL = "REFLECTION_TEACHER_BASE_URL"
ENV_MODEL = "REFLECTION_TEACHER_MODEL"
ENV_API_KEY = "REFLECTION_TEACHER_API_KEY"
ENV_STUDENT = "REFLECTION_STUDENT"
# The pairwise judge of the evaluation: its own model when set, else the teacher.
ENV_JUDGE_BASE_URL = "REFLECTION_JUDGE_BASE_URL"
ENV_JUDGE_MODEL = "REFLECTION_JUDGE_MODEL"
ENV_JUDGE_API_KEY = "REFLECTION_JUDGE_API_KEY"
# How a run executes its steps: `multiprocess` (each step in its own process, so a crashed step cannot take the
# run down and a run's independent steps run side by side) or `in_process` (every step in the run's own process:
# no process start and model-library import per step, for a small machine).
ENV_EXECUTOR = "REFLECTION_EXECUTOR"
EXECUTORS = ("multiprocess", "in_process")
# Step processes fork from a server that has imported Dagster and this code location once, instead of each
# starting a fresh interpreter that imports them again (Dagster's default, `spawn`). The code location imports
# neither torch nor CUDA, so every step still initialises its own device.
STEP_PROCESS_START = {"forkserver": {"preload_modules": ["reflection_assets.defs.definitions"]}}


def env_or(name: str, default: str) -> Any:
    """`dg.EnvVar(name)` when the variable is set (so the UI shows where it came from), else `default`."""
    return dg.EnvVar(name) if os.environ.get(name) else default


def build_io_manager(database: Any, env: Mapping[str, str] | None = None) -> dg.ConfigurableIOManager:
    """The asset tables' IO manager, from REFLECTION_STORAGE (`reflection_assets.storage`): one DuckDB table per
    tabular asset, named after the asset, in schema `main` (`local`, the default); one Delta table per asset under
    REFLECTION_TABLES_URI (`shared`)."""
    if not storage_from_env(env).shared:
        return WarehouseIOManager(database=database, schema="main")
    return ObjectTablesIOManager(root=dg.EnvVar(TABLES_URI_ENV))


def build_warehouse(database: Any, env: Mapping[str, str] | None = None) -> Warehouse:
    """The warehouse resource: the DuckDB file (`local`), or the shared tables and the Postgres store (`shared`)."""
    if not storage_from_env(env).shared:
        return Warehouse(database=database)
    return Warehouse(database=database, tables_uri=dg.EnvVar(TABLES_URI_ENV), store_url=dg.EnvVar(STORE_URL_ENV),
                     files_uri=dg.EnvVar(FILES_URI_ENV))


def build_resources() -> dict[str, Any]:
    database = env_or("REFLECTION_WAREHOUSE", str(warehouse_path()))
    return {
        "io_manager": build_io_manager(database),
        "warehouse": build_warehouse(database),
        "mlflow": MlflowTracking(tracking_uri=env_or("MLFLOW_TRACKING_URI", "")),
        "student": build_student(),
        "teacher": build_teacher(as_env_vars=True),
        "judge": build_judge(as_env_vars=True),
        # lora_checkpoint with num_processes > 1 launches torchrun / accelerate through Dagster Pipes
        "pipes_subprocess_client": dg.PipesSubprocessClient(),
    }


def build_executor(env: Mapping[str, str] | None = None) -> dg.ExecutorDefinition:
    """The code location's executor, from REFLECTION_EXECUTOR (default `multiprocess`)."""
    choice = (os.environ if env is None else env).get(ENV_EXECUTOR, "").strip() or EXECUTORS[0]
    if choice not in EXECUTORS:
        raise ValueError(f"{ENV_EXECUTOR}={choice!r}: expected one of {', '.join(EXECUTORS)}")
    if choice == "in_process":
        return dg.in_process_executor
    return dg.multiprocess_executor.configured({"start_method": STEP_PROCESS_START}, name="multiprocess")


def build_student(env: Mapping[str, str] | None = None) -> StudentModel:
    """The student resource: in this process, or a vLLM server when REFLECTION_STUDENT_BASE_URL is set.

    Set values become `dg.EnvVar`s (the UI shows where they came from; the key is read at run time).
    The variable names are owned by `reflection_assets.served.client`, which the CLI reads too.
    """
    from reflection_assets.served import client as served

    env = os.environ if env is None else env
    settings = TeacherSettings(env, as_env_vars=True)
    fields: dict[str, Any] = {"model": settings.get(ENV_STUDENT, "bundled")}
    if settings.is_set(served.ENV_BASE_URL):
        served.ServedStudent.from_env(env)  # validates now: a missing model name or a bad number fails at load
        fields.update(
            base_url=settings.get(served.ENV_BASE_URL),
            served_model=settings.get(served.ENV_MODEL),
            api_key=settings.get(served.ENV_API_KEY),
        )
        for variable, name in served.ENV_POLICY.items():
            if settings.is_set(variable):
                # Dagster has no float source: a float knob is read now (validated above).
                kind = type(getattr(served.DEFAULT_POLICY, name))
                fields[name] = dg.EnvVar.int(variable) if kind is int else float(env[variable])
        if settings.is_set(served.ENV_LOGPROB_CONCURRENCY):
            fields["logprob_concurrency"] = dg.EnvVar.int(served.ENV_LOGPROB_CONCURRENCY)
    return StudentModel(**fields)


class TeacherSettings:
    """Reads teacher settings from `env`: plain values, or `dg.EnvVar`s that Dagster resolves at run time.

    With `as_env_vars` (the definitions) a value that is set becomes `dg.EnvVar(name)`, so the UI shows
    where it came from and a secret is read at run time, never stored in the definitions.
    """

    def __init__(self, env: Mapping[str, str], as_env_vars: bool) -> None:
        self.env, self.as_env_vars = env, as_env_vars

    def is_set(self, name: str) -> bool:
        return bool((self.env.get(name) or "").strip())

    def get(self, name: str, default: Any = None) -> Any:
        if not self.is_set(name):
            return default
        return dg.EnvVar(name) if self.as_env_vars else self.env[name].strip()


@dataclass(frozen=True)
class TeacherSetting:
    """One teacher resource field a deployment sets from an environment variable.

    The default is the resource field's own (one owner); `teacher_env_markdown()` renders this table
    into the docs' configuration page when the docs are built.
    """

    variable: str
    field: str
    backend: type[Teacher]  # the class that declares the field (Teacher: both backends)

    @property
    def default(self) -> Any:
        return self.backend.model_fields[self.field].default

    @property
    def kind(self) -> type:
        annotation = self.backend.model_fields[self.field].annotation
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0] if args else annotation  # Optional[int] -> int

    @property
    def what(self) -> str:
        return self.backend.model_fields[self.field].description or ""

    def applies_to(self, teacher_class: type[Teacher]) -> bool:
        return issubclass(teacher_class, self.backend)


# Deployment settings of the teacher. Per-run knobs (max_new_tokens, caps, limit, a run's own
# temperature or guided choice) stay in the launchpad config of the reflection assets.
TEACHER_SETTINGS: tuple[TeacherSetting, ...] = (
    TeacherSetting("REFLECTION_TEACHER_GUIDED", "guided", OpenAICompatibleTeacher),
    TeacherSetting("REFLECTION_TEACHER_CONCURRENCY", "max_concurrency", OpenAICompatibleTeacher),
    TeacherSetting("REFLECTION_TEACHER_INITIAL_CONCURRENCY", "initial_concurrency", OpenAICompatibleTeacher),
    TeacherSetting("REFLECTION_TEACHER_RPM", "requests_per_minute", OpenAICompatibleTeacher),
    TeacherSetting("REFLECTION_TEACHER_TPM", "tokens_per_minute", OpenAICompatibleTeacher),
    TeacherSetting("REFLECTION_TEACHER_TIMEOUT_S", "timeout_s", OpenAICompatibleTeacher),
    TeacherSetting("REFLECTION_TEACHER_CONNECT_TIMEOUT_S", "connect_timeout_s", OpenAICompatibleTeacher),
    TeacherSetting("REFLECTION_TEACHER_MAX_ATTEMPTS", "max_attempts", OpenAICompatibleTeacher),
    TeacherSetting("REFLECTION_TEACHER_BACKOFF_INITIAL_S", "backoff_initial_s", OpenAICompatibleTeacher),
    TeacherSetting("REFLECTION_TEACHER_BACKOFF_MAX_S", "backoff_max_s", OpenAICompatibleTeacher),
    TeacherSetting("REFLECTION_TEACHER_MAX_RETRY_AFTER_S", "max_retry_after_s", OpenAICompatibleTeacher),
    TeacherSetting("REFLECTION_TEACHER_TEMPERATURE", "temperature", Teacher),
    TeacherSetting("REFLECTION_TEACHER_TOP_P", "top_p", Teacher),
    TeacherSetting("REFLECTION_TEACHER_SEED", "seed", Teacher),
    TeacherSetting("REFLECTION_TEACHER_DEVICE", "device", TransformersTeacher),
    TeacherSetting("REFLECTION_TEACHER_DTYPE", "dtype", TransformersTeacher),
    TeacherSetting("REFLECTION_TEACHER_BATCH_TOKENS", "batch_tokens", TransformersTeacher),
    TeacherSetting("REFLECTION_TEACHER_BATCH_SIZE", "batch_size", TransformersTeacher),
    TeacherSetting("REFLECTION_TEACHER_NUM_THREADS", "num_threads", TransformersTeacher),
)


def setting_value(setting: TeacherSetting, env: Mapping[str, str], as_env_vars: bool = True) -> Any:
    """The value to give the resource field for a variable that is set (validated either way).

    With `as_env_vars` (the definitions), strings, integers and booleans stay `dg.EnvVar`s,
    resolved at run time and shown as such in the
    UI (Dagster's config reads a boolean variable as true unless it is false/0/none/empty; an
    `IntEnvVar` carries it through the resource's validation). Dagster has no float source, so
    floats are read here, with an error that names the variable.
    """
    raw = env[setting.variable].strip()
    if setting.kind is str:
        return dg.EnvVar(setting.variable) if as_env_vars else raw
    if setting.kind is int and not raw.lstrip("-").isdigit():
        raise TeacherError(f"{setting.variable} must be an integer ({setting.field}), not {raw!r}")
    if setting.kind is bool and raw.lower() not in ("true", "false", "1", "0"):
        raise TeacherError(f"{setting.variable} must be true, false, 1 or 0 ({setting.field}), not {raw!r}")
    if setting.kind in (int, bool) and as_env_vars:
        return dg.EnvVar.int(setting.variable)
    if setting.kind is bool:
        return raw.lower() in ("true", "1")
    try:
        return setting.kind(raw)
    except ValueError:
        raise TeacherError(f"{setting.variable} must be a number ({setting.field}), not {raw!r}") from None


def settings_from_env(teacher_class: type[Teacher], env: Mapping[str, str], as_env_vars: bool = True) -> dict[str, Any]:
    """Resource fields of `teacher_class` from the variables that are set (unset: the field's default)."""
    return {
        s.field: setting_value(s, env, as_env_vars)
        for s in TEACHER_SETTINGS
        if s.applies_to(teacher_class) and (env.get(s.variable) or "").strip()
    }


def build_teacher(env: Mapping[str, str] | None = None, *, as_env_vars: bool = False) -> Teacher:
    """An OpenAI-compatible server when REFLECTION_TEACHER_BASE_URL is set, else the in-process model.

    REFLECTION_TEACHER_MODEL names the served model (required with a base URL) or the local model
    (default: the bundled one); REFLECTION_TEACHER_API_KEY is optional (local servers need none).
    Every setting of TEACHER_SETTINGS that is set becomes the resource field it names. `env`
    defaults to the process environment. Nothing is loaded or contacted here.
    """
    env = os.environ if env is None else env
    settings = TeacherSettings(env, as_env_vars)
    if settings.is_set(ENV_BASE_URL):
        if not settings.is_set(ENV_MODEL):
            raise TeacherError(f"{ENV_BASE_URL} is set, so {ENV_MODEL} must name the served model")
        return OpenAICompatibleTeacher(
            base_url=settings.get(ENV_BASE_URL),
            model=settings.get(ENV_MODEL),
            api_key=settings.get(ENV_API_KEY),
            **settings_from_env(OpenAICompatibleTeacher, env, as_env_vars),
        )
    return TransformersTeacher(
        model_ref=settings.get(ENV_MODEL, "bundled"), **settings_from_env(TransformersTeacher, env, as_env_vars)
    )


def build_judge(env: Mapping[str, str] | None = None, *, as_env_vars: bool = False) -> JudgeModel:
    """The evaluation's judge: served (REFLECTION_JUDGE_BASE_URL + _MODEL, optional _API_KEY), local
    (REFLECTION_JUDGE_MODEL alone), else empty, meaning the teacher judges (`JudgeModel.resolve`)."""
    env = os.environ if env is None else env
    settings = TeacherSettings(env, as_env_vars)
    if settings.is_set(ENV_JUDGE_BASE_URL) and not settings.is_set(ENV_JUDGE_MODEL):
        raise TeacherError(f"{ENV_JUDGE_BASE_URL} is set, so {ENV_JUDGE_MODEL} must name the served model")
    return JudgeModel(
        base_url=settings.get(ENV_JUDGE_BASE_URL, ""),
        model=settings.get(ENV_JUDGE_MODEL, ""),
        api_key=settings.get(ENV_JUDGE_API_KEY),
    )


def judge_description(judge: Teacher, teacher: Teacher, student_model: str) -> str:
    """Who judges, and whether it is the teacher or the student's base model (the report prints this)."""
    name = judge.model_name()
    roles = []
    if name == teacher.model_name():
        roles.append("the teacher")
    if name in (f"in-process {student_model}", student_model):
        roles.append("the student's base model")
    return f"{name} ({' and '.join(roles)})" if roles else name


def teacher_env_markdown() -> str:
    """The docs' table of teacher settings, rendered from TEACHER_SETTINGS."""
    lines = ["| variable | default | backend | what |", "| --- | --- | --- | --- |"]
    for s in TEACHER_SETTINGS:
        backend = {Teacher: "both", OpenAICompatibleTeacher: "HTTP"}.get(s.backend, "in-process")
        shown = str(s.default).lower() if isinstance(s.default, bool) else s.default
        default = "(unset)" if s.default is None else f"`{shown}`"
        lines.append(f"| `{s.variable}` | {default} | {backend} | {s.what} |")
    return "\n".join(lines)
