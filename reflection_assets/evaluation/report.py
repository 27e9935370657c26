"""The ablation report in long form: one row per (model, suite, metric, reference), tested across runs and items.

Roles: the **primary** endpoint (one suite/metric, the method against one reference, named in the
run's config) is tested at alpha on its own and stated first; the **control** (`full` against the
base on the primary endpoint) must come out better, or nothing below it is informative; every
other row is **secondary**, its p-value Holm-adjusted over all secondary rows of the report.

A verdict is about the methods, not about one set of adapters: each training run (seed) shifts all
of its items together, so the test (`runs`) counts the spread between an arm's runs as well as the
spread over items, and with no arm trained twice the verdict is "too few runs". The interval is the
same t interval; "detectable" is the smallest difference the design shows at 80 % power, and
"seeds needed" how many seeds per arm this row's difference would take. The older items-only test
(exact sign-flip over items of seed-averaged scores) stays as `p_items`: a statement about these
particular adapters, never the verdict. Contaminated items must already be removed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from reflection_assets.documented import documented
from reflection_assets.evaluation.runner import BASE, LOWER_IS_BETTER
from reflection_assets.evaluation.runs import RunComparison, RunSpread, compare, pooled_spread
from reflection_assets.evaluation.significance import (
    ALPHA,
    BETTER,
    EXACT_MAX,
    MIN_PAIRED_N,
    NO_EVIDENCE,
    RESAMPLES,
    TOO_FEW,
    TOO_FEW_RUNS,
    WORSE,
    decide,
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
    "model_sd_over_seeds",  # sd of the model's per-seed means
    "model_between_sd",  # the same with the within-run item noise taken out (NaN below two seeds)
    "model_seed_values",
    "reference_value",
    "delta",  # model - reference, raw (for NLL lower is better; the verdict reads the direction)
    "ci_low",  # 95 % t interval over runs and items
    "ci_high",
    "se",  # standard error of delta: item spread / n + between-run variance / seeds
    "df",  # Satterthwaite degrees of freedom of the t test
    "p_value",  # the test over runs and items (the verdict reads it)
    "p_adjusted",  # Holm over the secondary rows; the primary and the control are tested alone
    "verdict",
    "detectable",  # smallest |delta| with 80 % power at this n, these seeds and this spread
    "seeds_needed",  # seeds per arm for 80 % power at this |delta| (inf: more items needed, not seeds)
    "run_sd",  # sd of one run's mean, pooled over the trained arms of this suite/metric (the test uses it)
    "run_df",  # replicate runs behind run_sd: sum over arms of (seeds - 1); 0 = too few runs
    "p_items",  # items-only sign-flip test of these adapters (seed-averaged): descriptive, not the verdict
    "model_rows",
    "reference_rows",
    "model_seeds",
    "reference_seeds",
    "judge_flip_share",
    "judge",
]
NAN = float("nan")
INTEGER_COLUMNS = ("n", "model_rows", "reference_rows", "model_seeds", "reference_seeds", "run_df")
TEXT_COLUMNS = ("role", "model", "reference", "suite", "metric", "model_seed_values", "verdict", "judge")
NUMBER_COLUMNS = tuple(c for c in COMPARISON_COLUMNS if c not in INTEGER_COLUMNS + TEXT_COLUMNS)


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
        RESAMPLES,
        f"sign-flip Monte Carlo draws of the items-only p_items (exact up to {EXACT_MAX} non-zero differences)",
    )
    seed: int = documented(0, "seed of the sign-flip Monte Carlo draws")
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


def _with_seed(scores: pd.DataFrame) -> pd.DataFrame:
    return scores if "seed" in scores else scores.assign(seed=0)


def run_matrices(scores: pd.DataFrame, suite: str, metric: str) -> dict[str, pd.DataFrame]:
    """{model: seeds x items} on one suite/metric, each model keeping the items every one of its seeds answered."""
    frame = _with_seed(scores)
    own = frame[(frame["suite"] == suite) & (frame["metric"] == metric)]
    wide = own.groupby(["model", "seed", "item_id"], sort=True)["value"].mean().unstack("item_id")
    out = {}
    for model in wide.index.unique(level="model"):
        matrix = wide.xs(model, level="model")
        out[str(model)] = matrix.loc[:, matrix.notna().all(axis=0)]
    return out


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
    models = _order(scored["model"].unique())
    primary_reference = settings.primary_reference if settings.primary_reference in models else BASE
    rows = []
    for suite, metric in sorted(set(zip(scored["suite"], scored["metric"]))):
        is_primary_endpoint = (suite, metric) == (settings.primary_suite, settings.primary_metric)
        endpoint = _Endpoint.build(scored, suite, metric, flips, arms or {}, judge, settings)
        for model, reference, role in _comparisons(models, settings, primary_reference):
            row = endpoint.row(model, reference, role if is_primary_endpoint else SECONDARY)
            if row is not None:
                rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty:
        return pd.DataFrame(columns=COMPARISON_COLUMNS)
    return _with_verdicts(table, settings)


@dataclass(frozen=True)
class _Endpoint:
    """One suite/metric: every model's seeds x items scores, the run spread pooled over the trained arms,
    the judge's order flips, the arms' facts."""

    suite: str
    metric: str
    matrices: Mapping[str, pd.DataFrame]
    spread: RunSpread
    flips: pd.DataFrame
    arms: Mapping[str, ArmFacts]
    judge: str
    settings: ReportSettings

    @classmethod
    def build(cls, scored, suite, metric, flips, arms, judge, settings) -> _Endpoint:
        matrices = run_matrices(scored, suite, metric)
        trained = {m: frame.to_numpy(float) for m, frame in matrices.items() if m != BASE}
        return cls(suite, metric, matrices, pooled_spread(trained), flips, arms, judge, settings)

    def _reference(self, model: str, reference: str) -> pd.DataFrame | None:
        if self.suite == JUDGE and reference == BASE:  # the judge's score already compares with the base
            items = self.matrices[model].columns
            return pd.DataFrame(np.zeros((1, len(items))), columns=items)
        return self.matrices.get(reference)

    def paired(self, model: str, reference: str) -> tuple[np.ndarray, np.ndarray] | None:
        """(model seeds x shared items, reference seeds x the same items); None when either has no items."""
        a = self.matrices.get(model)
        b = self._reference(model, reference) if a is not None else None
        if a is None or b is None or a.empty or b.empty:
            return None
        if a.columns.equals(b.columns):  # the usual case: every model answered every item
            return a.to_numpy(float), b.to_numpy(float)
        shared = a.columns.intersection(b.columns).sort_values()
        return a[shared].to_numpy(float), b[shared].to_numpy(float)

    def row(self, model: str, reference: str, role: str) -> dict | None:
        """`model` against `reference` on the items both answered; None when either has no items."""
        pair = self.paired(model, reference)
        if pair is None:
            return None
        x, y = pair
        shared = x.shape[1]
        trained_reference = reference != BASE
        test = compare(x, y, self.spread, trained_reference, self.settings.alpha) if shared else None
        diff = x.mean(axis=0) - y.mean(axis=0)
        settings = self.settings
        own = self.spread.arms.get(model)
        model_seeds, reference_seeds = x.mean(axis=1).tolist(), y.mean(axis=1).tolist()
        flip_share = _flip_share(self.flips, model if reference == BASE else None) if self.suite == JUDGE else NAN
        return {
            "role": role, "model": model, "reference": reference, "suite": self.suite, "metric": self.metric,
            "n": shared,
            "model_value": float(np.mean(x)) if shared else NAN,
            "model_sd_over_seeds": float(np.std(model_seeds, ddof=1)) if len(model_seeds) > 1 else NAN,
            "model_between_sd": own.between_sd if own is not None else NAN,
            "model_seed_values": ", ".join(f"{v:.3f}" for v in model_seeds),
            "reference_value": float(np.mean(y)) if shared else NAN,
            **_test_columns(test, self.spread, settings.alpha),
            "verdict": "",
            "run_sd": self.spread.run_sd, "run_df": self.spread.run_df,
            "p_items": sign_flip_p(diff, settings.resamples, settings.seed) if shared else NAN,
            "model_rows": _rows(self.arms, model), "reference_rows": _rows(self.arms, reference),
            "model_seeds": _seeds(self.arms, model, model_seeds),
            "reference_seeds": _seeds(self.arms, reference, reference_seeds),
            "judge_flip_share": flip_share,
            "judge": self.judge if self.suite == JUDGE else "",
            "higher_is_better": self.metric not in LOWER_IS_BETTER,
        }  # fmt: skip


def _test_columns(test: RunComparison | None, spread: RunSpread, alpha: float) -> dict[str, float]:
    if test is None:
        return dict.fromkeys(("delta", "ci_low", "ci_high", "se", "df", "p_value", "detectable", "seeds_needed"), NAN)
    return {
        "delta": test.delta, "ci_low": test.low, "ci_high": test.high, "se": test.se, "df": test.df,
        "p_value": test.p_value, "p_adjusted": test.p_value, "detectable": test.detectable,
        "seeds_needed": test.seeds_needed(test.delta, spread, alpha),
    }  # fmt: skip


def _with_verdicts(table: pd.DataFrame, settings: ReportSettings) -> pd.DataFrame:
    """Holm over the secondaries that can be decided, a verdict on every row (the judge's set aside when its
    order flips too often), the primary row first, then the control, then the rest."""
    secondary = table["role"] == SECONDARY
    family = secondary & (table["run_df"] > 0) & (table["n"] >= max(1, settings.min_paired_n))
    table.loc[secondary, "p_adjusted"] = NAN
    table.loc[family, "p_adjusted"] = holm(table.loc[family, "p_value"].tolist())
    table["verdict"] = [_verdict(r, settings) for r in table.itertuples()]
    biased = (table["suite"] == JUDGE) & (table["judge_flip_share"] > settings.judge_flip_threshold)
    table.loc[biased, "verdict"] = JUDGE_BIASED
    rank = table["role"].map({PRIMARY: 0, CONTROL: 1, SECONDARY: 2})
    table = table.assign(_rank=rank).sort_values(["_rank", "suite", "metric"], kind="mergesort")
    return table[COMPARISON_COLUMNS].reset_index(drop=True)


def _verdict(row, settings: ReportSettings) -> str:
    """Too few items, too few runs, or the test's verdict on the (Holm-adjusted) p-value."""
    verdict = decide(row.delta, row.p_adjusted, row.n, row.higher_is_better, settings.alpha, settings.min_paired_n)
    if verdict != TOO_FEW and row.run_df == 0:
        return TOO_FEW_RUNS
    return verdict


def item_level_verdicts(table: pd.DataFrame, settings: ReportSettings = ReportSettings()) -> pd.Series:
    """The verdicts the items-only test would give (Holm over the secondaries' p_items): what the report said
    before runs counted. A statement about these adapters; the calibration compares it with the verdict."""
    p = table["p_items"].astype(float).copy()
    secondary = table["role"] == SECONDARY
    p[secondary] = holm(p[secondary].tolist())
    higher = [m not in LOWER_IS_BETTER for m in table["metric"]]
    return pd.Series(
        [
            decide(d, q, n, h, settings.alpha, settings.min_paired_n)
            for d, q, n, h in zip(table["delta"], p, table["n"], higher)
        ],
        index=table.index,
    )


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
    if control is not None and control["verdict"] == TOO_FEW_RUNS:
        lines.append(
            "NO VERDICT ACROSS TRAINING RUNS: no arm was trained with two seeds or more, so no difference (not even "
            "`full` against the base) can be told from the spread between two training runs."
        )
    elif control_failed(table):
        lines.append(
            "THE EVALUATION COULD NOT DETECT FINE-TUNING ITSELF: `full` (every row) is not better than the base "
            f"on {control['suite']}/{control['metric']} ({control['verdict']}), so the verdicts below are "
            "uninformative."
        )
    if primary is not None:
        lines.append(f"Primary: {describe(primary)}")
        lines.append(f"Seeds: {seeds_note(primary)}")
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
    seeds = f"seeds {_int(row['model_seeds']) or '-'}/{_int(row['reference_seeds']) or '-'}"
    if row["verdict"] in (BETTER, WORSE, NO_EVIDENCE, JUDGE_BIASED):
        detail = (
            f"delta {_fmt(row['delta'])} [{_fmt(row['ci_low'])}, {_fmt(row['ci_high'])}], p {_fmt(row['p_value'])}, "
            f"n {row['n']}, {seeds}, run sd {_fmt(row['run_sd'])}, detectable {_fmt(row['detectable'])}"
        )
        return f"{row['verdict']}: {what} ({detail})"
    if row["verdict"] == TOO_FEW_RUNS:
        return (
            f"{TOO_FEW_RUNS}: {what} (delta {_fmt(row['delta'])}, n {row['n']}, {seeds}; no arm on this endpoint "
            "was trained with two seeds or more, so the spread between training runs is unknown)"
        )
    return f"{row['verdict']}: {what} (n {row['n']} paired items; at least the configured minimum is needed)"


def seeds_note(row: pd.Series) -> str:
    """What the seeds allow on this row: why there is no verdict, or how many seeds its difference would need."""
    seeds = _int(row["model_seeds"]) or "1"
    if row["verdict"] == TOO_FEW:
        return "more evaluation items are needed before seeds matter."
    if row["verdict"] == TOO_FEW_RUNS:
        return (
            f"{seeds} per arm; train each arm with 2 seeds or more (`--seeds 3`) so the report can tell a "
            "difference between the methods from a difference between two training runs."
        )
    spread = f"between-run sd {_fmt(row['run_sd'])} ({_int(row['run_df'])} replicate runs)"
    if row["verdict"] in (BETTER, WORSE):
        return f"{seeds} per arm, {spread}: the difference stands beyond the spread between training runs."
    needed = row["seeds_needed"]
    if _missing(needed) or not row["delta"]:
        return f"{seeds} per arm, {spread}."
    size = _fmt(abs(float(row["delta"])))
    if math.isinf(needed):
        return (
            f"{seeds} per arm, {spread}: more seeds cannot show a difference of {size}; the items' own spread "
            "hides it (more evaluation items are needed)."
        )
    more = int(needed) - int(seeds)
    verb = f"{int(needed)} seeds per arm ({more} more)" if more > 0 else f"{int(needed)} seeds per arm"
    return f"{seeds} per arm, {spread}: a difference of {size} would need about {verb} for 80 % power."


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
    """Rows as a reader reads them: role, who vs whom, values, delta [95% CI], p (adjusted), verdict,
    detectable, seeds needed, the items-only p of these adapters."""
    lines = [
        "| role | model | vs | suite/metric | n | seeds | value ± sd over seeds (per seed) | ref value "
        "| delta [95% CI] | p (adj.) | verdict | detectable | seeds needed | p items only | rows |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    shown = table[table["model"] == METHOD_ARM] if method_only else table
    for r in shown.itertuples():
        sd = "" if _missing(r.model_sd_over_seeds) else f" ± {_fmt(r.model_sd_over_seeds)} ({r.model_seed_values})"
        p = _fmt(r.p_value) if r.role != SECONDARY else f"{_fmt(r.p_value)} ({_fmt(r.p_adjusted) or '-'})"
        lines.append(
            f"| {r.role} | {r.model} | {r.reference} | {r.suite}/{r.metric} | {r.n} "
            f"| {_int(r.model_seeds)} / {_int(r.reference_seeds)} | {_fmt(r.model_value)}{sd} "
            f"| {_fmt(r.reference_value)} | {_fmt(r.delta)} [{_fmt(r.ci_low)}, {_fmt(r.ci_high)}] | {p} "
            f"| {r.verdict} | {_fmt(r.detectable)} | {_needed(r.seeds_needed)} | {_fmt(r.p_items)} "
            f"| {_pair(r.model_rows, r.reference_rows)} |"
        )
    return "\n".join(lines)


def _needed(value) -> str:
    if _missing(value):
        return ""
    return "more items" if math.isinf(value) else str(int(value))


def spread_table(table: pd.DataFrame) -> str:
    """Each trained arm's runs on the primary endpoint: per-seed means, their sd, the sd with item noise out."""
    primary = _one(table, PRIMARY)
    endpoint = (primary["suite"], primary["metric"]) if primary is not None else None
    arms = table[(table["reference"] == BASE) & (table["role"] != PRIMARY)]
    if endpoint is not None:
        arms = arms[(arms["suite"] == endpoint[0]) & (arms["metric"] == endpoint[1])]
    if arms.empty:
        return ""
    first = arms.iloc[0]
    lines = [
        f"Between training runs on {first['suite']}/{first['metric']} (pooled between-run sd "
        f"{_fmt(first['run_sd']) or 'unknown'}, {_int(first['run_df'])} replicate runs):",
        "",
        "| arm | seeds | per-seed mean | sd over seeds | between-run sd (item noise out) |",
        "|---|---|---|---|---|",
    ]
    for r in arms.itertuples():
        lines.append(
            f"| {r.model} | {_int(r.model_seeds)} | {r.model_seed_values} | {_fmt(r.model_sd_over_seeds)} "
            f"| {_fmt(r.model_between_sd)} |"
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
    spread = spread_table(table)
    if spread:
        lines += [spread, ""]
    lines.append(
        "Verdicts: t test over training runs and items (a random intercept per run: the between-run variance "
        "pooled over the trained arms, Satterthwaite df), 'too few runs' when no arm was trained with two seeds, "
        "'too few items' below the minimum paired n; intervals: the same t interval, unadjusted; detectable: the "
        "smallest difference these seeds, items and spreads show with 80 % power; seeds needed: per arm, for "
        "80 % power at the row's difference; p items only: the sign-flip test over items of these adapters, "
        "which says nothing about another training run."
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
    def seeds(self) -> str:
        """What the seeds allow on the primary row (how many more would decide it), or why it was not tested."""
        primary = self.table[self.table["role"] == PRIMARY] if len(self.table) else self.table
        return seeds_note(primary.iloc[0]) if len(primary) else "no primary row"

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
