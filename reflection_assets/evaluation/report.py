"""The ablation report in long form: one row per (model, suite, metric, reference), tested at small n.

Roles: the **primary** endpoint (one suite/metric, the method against one reference, named in the
run's config) is tested at alpha on its own and stated first; the **control** (`full` against the
base on the primary endpoint) must come out better, or nothing below it is informative; every
other row is **secondary**, its p-value Holm-adjusted over all secondary rows of the report.

Paired rows: a model's per-item score is its mean over training seeds (so seeds shrink the noise
of the arm, and items stay the unit of the test); the rows present for both models are the paired
n. The test is the exact sign-flip permutation test (`significance`); the interval beside it is a
paired percentile bootstrap, descriptive and unadjusted. "Detectable" is the smallest difference
the row's paired spread and n could show at 80 % power, so "no evidence" reads beside what could
have been seen. Contaminated items must already be removed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from reflection_assets.documented import documented
from reflection_assets.evaluation.bootstrap import RESAMPLES as BOOTSTRAP_RESAMPLES
from reflection_assets.evaluation.bootstrap import paired_interval
from reflection_assets.evaluation.runner import BASE, LOWER_IS_BETTER
from reflection_assets.evaluation.significance import (
    ALPHA,
    BETTER,
    EXACT_MAX,
    MIN_PAIRED_N,
    NO_EVIDENCE,
    RESAMPLES,
    WORSE,
    decide,
    detectable_effect,
    holm,
    sign_flip_p,
)
from reflection_assets.evaluation.suites import HELDOUT_NLL, JUDGE

RANDOM_ARM, METHOD_ARM, POSITIVE_CONTROL_ARM = "random", "selective", "full"
PRIMARY, CONTROL, SECONDARY = "primary", "control", "secondary"
JUDGE_BIASED = "judge position-biased: uninformative"
FLIP_METRIC = "position_flip"  # judge rows: 1 when the verdict flipped between the two orders
# References the method is compared with directly, in the order a reader asks about them.
METHOD_REFERENCES = (BASE, RANDOM_ARM, "reflected_all", "ifd_topk", "longest", POSITIVE_CONTROL_ARM)
COMPARISON_COLUMNS = [
    "role",
    "model",
    "reference",
    "suite",
    "metric",
    "n",  # paired items (present for both models)
    "model_value",
    "model_sd_over_seeds",
    "model_seed_values",
    "reference_value",
    "delta",  # model - reference, raw (for NLL lower is better; the verdict reads the direction)
    "ci_low",
    "ci_high",
    "p_value",
    "p_adjusted",  # Holm over the secondary rows; the primary and the control are tested alone
    "verdict",
    "detectable",  # smallest |delta| with 80 % power at this n and spread
    "model_rows",
    "reference_rows",
    "model_seeds",
    "reference_seeds",
    "judge_flip_share",
    "judge",
]
NAN = float("nan")


@dataclass(frozen=True)
class ReportSettings:
    """What the report tests and how; recorded with it."""

    primary_suite: str = documented(HELDOUT_NLL, "the primary endpoint's suite (stated first)")
    primary_metric: str = documented("nll", "the primary endpoint's metric")
    primary_reference: str = documented(
        "reflected_all", "the method is tested against this arm on the primary endpoint (the base when it is absent)"
    )
    method: str = documented(METHOD_ARM, "the arm that is the method under test")
    alpha: float = documented(ALPHA, "test level; secondaries are Holm-adjusted at it")
    min_paired_n: int = documented(MIN_PAIRED_N, "below this many paired items the verdict is 'too few items'")
    resamples: int = documented(
        RESAMPLES, f"sign-flip Monte Carlo draws (exact up to {EXACT_MAX} non-zero differences)"
    )
    bootstrap_resamples: int = documented(BOOTSTRAP_RESAMPLES, "bootstrap draws behind each interval")
    seed: int = documented(0, "seed of the Monte Carlo draws and the bootstrap intervals")
    judge_flip_threshold: float = documented(
        0.5, "above this share of order-flipped judge verdicts the judge suite is uninformative"
    )


@dataclass(frozen=True)
class ArmFacts:
    """What a row says about a model besides its scores: rows trained and seeds."""

    rows: int | None
    seeds: int


def training_facts(checkpoints: pd.DataFrame) -> dict[str, ArmFacts]:
    """{arm: rows trained (the largest over its seeds), seeds trained} from the lora_checkpoint table."""
    if checkpoints is None or checkpoints.empty or "arm" not in checkpoints:
        return {}
    trained = checkpoints[checkpoints["status"].astype(str) != "skipped"]
    facts = {}
    for arm, part in trained.groupby("arm"):
        facts[str(arm)] = ArmFacts(int(part["rows_trained"].max()), int(len(part)))
    return facts


def per_item(scores: pd.DataFrame) -> pd.DataFrame:
    """Mean per (model, suite, metric, item) over seeds (the unit the paired test compares)."""
    frame = scores if "seed" in scores else scores.assign(seed=0)
    return frame.groupby(["model", "suite", "metric", "item_id"], sort=True, as_index=False)["value"].mean()


def _seed_means(scores: pd.DataFrame, model: str, suite: str, metric: str) -> list[float]:
    frame = scores if "seed" in scores else scores.assign(seed=0)
    own = frame[(frame["model"] == model) & (frame["suite"] == suite) & (frame["metric"] == metric)]
    return [float(v) for v in own.groupby("seed", sort=True)["value"].mean()]


def _series(items: pd.DataFrame, model: str, suite: str, metric: str) -> pd.Series:
    own = items[(items["model"] == model) & (items["suite"] == suite) & (items["metric"] == metric)]
    return own.set_index("item_id")["value"]


def _comparisons(models: list[str], settings: ReportSettings, primary_reference: str) -> list[tuple[str, str, str]]:
    """(model, reference, role-if-primary-endpoint) pairs: every arm vs the base, the method vs each arm."""
    pairs = [(m, BASE) for m in models if m != BASE]
    if settings.method in models:
        pairs += [(settings.method, r) for r in models if r not in (BASE, settings.method)]
    out = []
    for model, reference in pairs:
        if (model, reference) == (settings.method, primary_reference):
            out.append((model, reference, PRIMARY))
        elif (model, reference) == (POSITIVE_CONTROL_ARM, BASE):
            out.append((model, reference, CONTROL))
        else:
            out.append((model, reference, SECONDARY))
    return out


def _order(models) -> list[str]:
    """The base, the method, then the references in the order a reader asks about them, then any other arm."""
    ranked = {name: k for k, name in enumerate((BASE, METHOD_ARM, *METHOD_REFERENCES[1:]))}
    return sorted(set(models), key=lambda m: (ranked.get(m, len(ranked)), m))


def comparison_table(
    scores: pd.DataFrame,
    settings: ReportSettings = ReportSettings(),
    arms: Mapping[str, ArmFacts] | None = None,
    judge: str = "",
) -> pd.DataFrame:
    """The long-form report (COMPARISON_COLUMNS), primary row first, then the control, then the rest."""
    if scores.empty:
        return pd.DataFrame(columns=COMPARISON_COLUMNS)
    flips = scores[scores["metric"] == FLIP_METRIC]
    scored = scores[scores["metric"] != FLIP_METRIC]
    items = per_item(scored)
    models = _order(items["model"].unique())
    primary_reference = settings.primary_reference if settings.primary_reference in models else BASE
    endpoint = _Endpoint(scored, items, flips, arms or {}, judge, settings)
    rows = []
    for suite, metric in sorted(set(zip(items["suite"], items["metric"]))):
        is_primary_endpoint = (suite, metric) == (settings.primary_suite, settings.primary_metric)
        for model, reference, role in _comparisons(models, settings, primary_reference):
            row = endpoint.row(suite, metric, model, reference, role if is_primary_endpoint else SECONDARY)
            if row is not None:
                rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty:
        return pd.DataFrame(columns=COMPARISON_COLUMNS)
    return _with_verdicts(table, settings)


@dataclass(frozen=True)
class _Endpoint:
    """What one comparison row is computed from: the per-item scores, the judge's order flips, the arms' facts."""

    scored: pd.DataFrame
    items: pd.DataFrame
    flips: pd.DataFrame
    arms: Mapping[str, ArmFacts]
    judge: str
    settings: ReportSettings

    def row(self, suite: str, metric: str, model: str, reference: str, role: str) -> dict | None:
        """`model` against `reference` on the items both answered; None when either has no items."""
        settings, scored = self.settings, self.scored
        a = _series(self.items, model, suite, metric)
        if a.empty:
            return None
        if suite == JUDGE and reference == BASE:
            b = pd.Series(0.0, index=a.index)  # the judge's score already compares with the base
        else:
            b = _series(self.items, reference, suite, metric)
            if b.empty:
                return None
        shared = sorted(set(a.index) & set(b.index))
        x, y = a.reindex(shared).to_numpy(float), b.reindex(shared).to_numpy(float)
        diff = x - y
        interval = paired_interval(x, y, settings.bootstrap_resamples, settings.seed)
        p = sign_flip_p(diff, settings.resamples, settings.seed) if len(diff) else NAN
        model_seeds = _seed_means(scored, model, suite, metric)
        flip_share = _flip_share(self.flips, model if reference == BASE else None) if suite == JUDGE else NAN
        return {
            "role": role, "model": model, "reference": reference, "suite": suite, "metric": metric,
            "n": len(shared),
            "model_value": float(np.mean(x)) if len(x) else NAN,
            "model_sd_over_seeds": float(np.std(model_seeds, ddof=1)) if len(model_seeds) > 1 else NAN,
            "model_seed_values": ", ".join(f"{v:.3f}" for v in model_seeds),
            "reference_value": float(np.mean(y)) if len(y) else NAN,
            "delta": interval.delta, "ci_low": interval.low, "ci_high": interval.high,
            "p_value": p, "p_adjusted": p if role != SECONDARY else NAN, "verdict": "",
            "detectable": detectable_effect(diff, settings.alpha),
            "model_rows": _rows(self.arms, model), "reference_rows": _rows(self.arms, reference),
            "model_seeds": _seeds(self.arms, model, model_seeds),
            "reference_seeds": _seeds(self.arms, reference, _seed_means(scored, reference, suite, metric)),
            "judge_flip_share": flip_share,
            "judge": self.judge if suite == JUDGE else "",
            "higher_is_better": metric not in LOWER_IS_BETTER,
        }  # fmt: skip


def _with_verdicts(table: pd.DataFrame, settings: ReportSettings) -> pd.DataFrame:
    """Holm over the secondaries, a verdict on every row (the judge's set aside when its order flips too
    often), the primary row first, then the control, then the rest."""
    secondary = table["role"] == SECONDARY
    table.loc[secondary, "p_adjusted"] = holm(table.loc[secondary, "p_value"].tolist())
    table["verdict"] = [
        decide(r.delta, r.p_adjusted, r.n, r.higher_is_better, settings.alpha, settings.min_paired_n)
        for r in table.itertuples()
    ]
    biased = (table["suite"] == JUDGE) & (table["judge_flip_share"] > settings.judge_flip_threshold)
    table.loc[biased, "verdict"] = JUDGE_BIASED
    rank = table["role"].map({PRIMARY: 0, CONTROL: 1, SECONDARY: 2})
    table = table.assign(_rank=rank).sort_values(["_rank", "suite", "metric"], kind="mergesort")
    return table[COMPARISON_COLUMNS].reset_index(drop=True)


def _rows(arms: Mapping[str, ArmFacts], model: str) -> float:
    facts = arms.get(model)
    return float(facts.rows) if facts is not None and facts.rows is not None else NAN


def _seeds(arms: Mapping[str, ArmFacts], model: str, seed_values: list[float]) -> int:
    facts = arms.get(model)
    return facts.seeds if facts is not None else max(1, len(seed_values))


def _flip_share(flips: pd.DataFrame, model: str | None) -> float:
    """Share of judged items whose verdict flipped between the two orders (one model, or all of them)."""
    own = flips if model is None else flips[flips["model"] == model]
    return float(own["value"].mean()) if len(own) else NAN


# -- what a reader sees first ------------------------------------------------------------------------------


def _one(table: pd.DataFrame, role: str) -> pd.Series | None:
    found = table[table["role"] == role]
    return None if found.empty else found.iloc[0]


def control_failed(table: pd.DataFrame) -> bool:
    control = _one(table, CONTROL)
    return control is not None and control["verdict"] != BETTER


def headline(table: pd.DataFrame) -> list[str]:
    """The report's first lines: the control's failure if it failed, the primary verdict, the control, the judge."""
    if table.empty:
        return ["No comparison: nothing was evaluated beside the base."]
    lines = []
    control, primary = _one(table, CONTROL), _one(table, PRIMARY)
    if control_failed(table):
        lines.append(
            "THE EVALUATION COULD NOT DETECT FINE-TUNING ITSELF: `full` (every row) is not better than the base "
            f"on {control['suite']}/{control['metric']} ({control['verdict']}), so the verdicts below are "
            "uninformative."
        )
    if primary is not None:
        lines.append(f"Primary: {describe(primary)}")
    else:
        lines.append("Primary: not tested (the method or the primary endpoint was not evaluated).")
    if control is not None:
        lines.append(f"Positive control: {describe(control)}")
    else:
        lines.append("Positive control: not run (no `full` arm evaluated); add it with `--train-arms ...,full`.")
    judged = table[table["suite"] == JUDGE]
    if len(judged):
        shares = judged.loc[judged["reference"] == BASE, "judge_flip_share"].dropna()
        share = f"{shares.mean():.0%}" if len(shares) else "n/a"
        who = judged.iloc[0]["judge"] or "unnamed"
        lines.append(f"Judge: {who}; verdicts that flipped between the two orders: {share}.")
    return lines


def describe(row: pd.Series) -> str:
    what = f"{row['model']} vs {row['reference']} on {row['suite']}/{row['metric']}"
    if row["verdict"] in (BETTER, WORSE, NO_EVIDENCE, JUDGE_BIASED):
        detail = (
            f"delta {_fmt(row['delta'])} [{_fmt(row['ci_low'])}, {_fmt(row['ci_high'])}], p {_fmt(row['p_value'])}, "
            f"n {row['n']}, detectable {_fmt(row['detectable'])}"
        )
        return f"{row['verdict']}: {what} ({detail})"
    return f"{row['verdict']}: {what} (n {row['n']} paired items; at least the configured minimum is needed)"


def method_warnings(table: pd.DataFrame) -> list[str]:
    """The primary endpoint only: the method is significantly worse than its reference."""
    primary = _one(table, PRIMARY)
    if primary is not None and primary["verdict"] == WORSE:
        return [f"primary: {describe(primary)}"]
    return []


def positive_control_note(table: pd.DataFrame) -> str:
    control = _one(table, CONTROL)
    if control is None:
        return "positive control not run (no `full` arm evaluated)"
    if control["verdict"] != BETTER:
        return (
            f"positive control failed: `full` is not better than the base ({describe(control)}); the evaluation "
            "could not detect fine-tuning itself, so the verdicts are uninformative"
        )
    return f"positive control ok: {describe(control)}"


# -- tables ------------------------------------------------------------------------------------------------


def _fmt(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float) and 0 < abs(value) < 10 ** (-digits):
        return f"{value:.1e}"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _pair(model_value, reference_value) -> str:
    shown = (_int(model_value) or "-", _int(reference_value) or "-")
    return "" if shown == ("-", "-") else " / ".join(shown)


def _int(value) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(int(value))


def markdown_table(table: pd.DataFrame, method_only: bool = False) -> str:
    """Rows as a reader reads them: role, who vs whom, values, delta [95% CI], p (adjusted), verdict, detectable."""
    lines = [
        "| role | model | vs | suite/metric | n | value ± sd over seeds (per seed) | ref value | delta [95% CI] "
        "| p (adj.) | verdict | detectable | rows | seeds |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    shown = table[table["model"] == METHOD_ARM] if method_only else table
    for r in shown.itertuples():
        sd = "" if _missing(r.model_sd_over_seeds) else f" ± {_fmt(r.model_sd_over_seeds)} ({r.model_seed_values})"
        p = _fmt(r.p_value) if r.role != SECONDARY else f"{_fmt(r.p_value)} ({_fmt(r.p_adjusted)})"
        lines.append(
            f"| {r.role} | {r.model} | {r.reference} | {r.suite}/{r.metric} | {r.n} | {_fmt(r.model_value)}{sd} "
            f"| {_fmt(r.reference_value)} | {_fmt(r.delta)} [{_fmt(r.ci_low)}, {_fmt(r.ci_high)}] | {p} "
            f"| {r.verdict} | {_fmt(r.detectable)} | {_pair(r.model_rows, r.reference_rows)} "
            f"| {_int(r.model_seeds)} / {_int(r.reference_seeds)} |"
        )
    return "\n".join(lines)


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def report_lines(table: pd.DataFrame) -> list[str]:
    """Everything the console and report.md print: the headline, the direct comparisons, the arms vs the base."""
    if table.empty:
        return ["No comparison: nothing was evaluated beside the base."]
    direct = table[(table["model"] == METHOD_ARM) | (table["role"] != SECONDARY)]
    versus_base = table[(table["reference"] == BASE) & (table["role"] == SECONDARY) & (table["model"] != METHOD_ARM)]
    lines = [*headline(table), ""]
    lines += ["The method against each reference (secondary p-values Holm-adjusted over all secondary rows):", ""]
    lines += [markdown_table(direct), ""]
    if len(versus_base):
        lines += ["Every other arm against the base:", "", markdown_table(versus_base), ""]
    lines.append(
        "Verdicts: exact sign-flip permutation test over paired items (per-item scores averaged over seeds), "
        "'too few items' below the minimum paired n; intervals: 95 % paired bootstrap, unadjusted; "
        "detectable: the smallest difference this n and spread shows with 80 % power."
    )
    return lines


@dataclass(frozen=True)
class Ablation:
    """The report as the asset publishes it: the table, its text, the control's note, the method's warnings."""

    table: pd.DataFrame
    lines: list[str]
    control: str
    warnings: list[str]
    items_left_out: int  # eval items left out for sharing an n-gram with a training row

    @property
    def markdown(self) -> str:
        """The headline's sentences as paragraphs (markdown joins adjacent lines), then the tables."""
        split = self.lines.index("") if "" in self.lines else len(self.lines)
        return "\n".join([self.headline_markdown, *self.lines[split:]])

    @property
    def headline_markdown(self) -> str:
        return "\n\n".join(self.lines[: self.lines.index("")] if "" in self.lines else self.lines)

    @property
    def primary_verdict(self) -> str:
        primary = self.table[self.table["role"] == PRIMARY] if len(self.table) else self.table
        return str(primary.iloc[0]["verdict"]) if len(primary) else "not tested"

    @property
    def control_failed(self) -> bool:
        return control_failed(self.table) or "not run" in self.control


def ablation(scores: pd.DataFrame, checkpoints: pd.DataFrame, settings: ReportSettings) -> Ablation:
    """Compare the arms on the items no training row overlaps; the judge's identity is read from the scores."""
    contaminated = scores["contaminated"].astype(bool) if len(scores) else pd.Series(dtype=bool)
    clean = scores[~contaminated] if len(scores) else scores
    judge = next((j for j in clean.get("judge", pd.Series(dtype=str)).astype(str) if j), "") if len(clean) else ""
    table = comparison_table(clean, settings, training_facts(checkpoints), judge)
    return Ablation(
        table=table,
        lines=report_lines(table),
        control=positive_control_note(table),
        warnings=method_warnings(table),
        items_left_out=int(scores["item_id"][contaminated].nunique()) if len(scores) else 0,
    )
