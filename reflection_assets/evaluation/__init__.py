"""Evaluation of the base model and every arm's adapter on the same items (issue 12).

Pure functions, no Dagster: suites (held-out NLL, generated arithmetic, IFEval-style checkers, a
GSM8K-format file, the pairwise judge, lm-eval), one shared generation pass over mixed adapters,
an output cache by content, verdicts over training runs and items, a 13-gram contamination check.
The thin asset module is `reflection_assets.defs.assets.evaluation`.
"""
