"""How often the ablation report decides when it should not, and finds what is there (issue 40).

Simulated held-out NLL evaluations at the demo's size (33 items, 4 trained arms x 2 seeds) and the
experiment's (40 items, 6 arms x 3 seeds), with and without run-level shifts, through the real
report code: the primary row's and the Holm family's false-verdict rates, the verdict over runs and
items beside the items-only verdict it replaced (same simulated data), then the primary row's power
on planted effects. The spreads come from a real evaluation when `--warehouse` names one (its
`eval_scores`), else from the tour demo's, measured once (`calibration.DEMO_NOISE`).

    python benchmarks/verdict_calibration.py [--runs 2000] [--warehouse data/warehouse.duckdb]
"""

from __future__ import annotations

import argparse
import time

from reflection_assets.evaluation.calibration import DEMO, DEMO_NOISE, EXPERIMENT, Noise, Rates, error_rates, noise_of

RUN_SDS = (0.0013,)  # also the run sd of the demo on the 2-core machine with native bf16
EFFECTS = (1, 2, 4)  # planted selective - reflected_all differences, in units of the run sd


def _rate(value: float, rates: Rates) -> str:
    return f"{value:.3f} ± {rates.se(value):.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000, help="simulated evaluations per row")
    parser.add_argument("--power-runs", type=int, default=500, help="simulated evaluations per power row")
    parser.add_argument("--warehouse", default="", help="a DuckDB warehouse whose eval_scores give the spreads")
    args = parser.parse_args()
    noise = DEMO_NOISE
    if args.warehouse:
        import duckdb

        with duckdb.connect(args.warehouse, read_only=True) as con:
            scores = con.execute("SELECT * FROM eval_scores WHERE NOT contaminated").df()
        noise = noise_of(scores)
    print(f"spreads: item sd {noise.item_sd:.3f}, noise sd {noise.noise_sd:.4f}, run sd {noise.run_sd:.4f}")
    print()
    print(
        "| size | run shifts | primary: over runs and items | primary: items only | Holm family: over runs "
        "and items | Holm family: items only | runs |"
    )
    print("|---|---|---|---|---|---|---|")
    started = time.time()
    for design in (DEMO, EXPERIMENT):
        for run_sd in sorted({0.0, *RUN_SDS, noise.run_sd}):
            rates = error_rates(design, Noise(noise.item_sd, noise.noise_sd, run_sd), runs=args.runs, seed=11)
            print(
                f"| {design.name} (n {design.items}, {design.seeds} seeds) | sd {run_sd:.4f} "
                f"| {_rate(rates.primary, rates)} | {_rate(rates.primary_items_only, rates)} "
                f"| {_rate(rates.family, rates)} | {_rate(rates.family_items_only, rates)} | {rates.runs} |",
                flush=True,
            )
    print()
    print("| size | planted effect | power: over runs and items | items only (not a valid test here) | runs |")
    print("|---|---|---|---|---|")
    for design in (DEMO, EXPERIMENT):
        for times in EFFECTS:
            effect = times * noise.run_sd
            rates = error_rates(design, noise, {"selective": -effect}, runs=args.power_runs, seed=12)
            print(
                f"| {design.name} | {effect:.4f} ({times}x run sd) | {_rate(rates.primary, rates)} "
                f"| {_rate(rates.primary_items_only, rates)} | {rates.runs} |",
                flush=True,
            )
    print(f"\n{time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
