"""Selection: the student's choices, the published filter, the ablation arms and their exports.

Pure functions over pandas frames; the Dagster assets are thin wrappers around them.
"""

from reflection_assets.selection.arms import ArmInputs, ArmResult, arm_rule, arm_summary, build_arm, build_arms
from reflection_assets.selection.columns import (
    ARM_COLUMNS,
    ARMS,
    INSTRUCTION_DECISION_COLUMNS,
    RESPONSE_DECISION_COLUMNS,
    SELECTION_EXTRA_COLUMNS,
)
from reflection_assets.selection.decisions import decide_instruction, decide_response
from reflection_assets.selection.lineage import LINEAGE_COLUMNS, LINEAGE_SQL
from reflection_assets.selection.rules import SelectionSettings, decision_counts, decision_counts_dict, select_rows

__all__ = [
    "ARMS",
    "ARM_COLUMNS",
    "INSTRUCTION_DECISION_COLUMNS",
    "LINEAGE_COLUMNS",
    "LINEAGE_SQL",
    "RESPONSE_DECISION_COLUMNS",
    "SELECTION_EXTRA_COLUMNS",
    "ArmInputs",
    "ArmResult",
    "SelectionSettings",
    "arm_rule",
    "arm_summary",
    "build_arm",
    "build_arms",
    "decide_instruction",
    "decide_response",
    "decision_counts",
    "decision_counts_dict",
    "select_rows",
]
