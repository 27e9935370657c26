"""Column names of the selection frames, in one place so assets, SQL and tests agree."""

from __future__ import annotations

# Choices of the two selective stages: REFLECTED (`teacher.outcomes`, the same word as a successful
# teacher outcome) or ORIGINAL. Score statuses: `scoring.statuses` (only OK counts).
ORIGINAL = "original"  # the choice that keeps the pair as it was

# Stage 1 (selective instruction reflection): one row per raw row_id.
INSTRUCTION_DECISION_COLUMNS = [
    "row_id",
    "instruction_choice",  # "reflected" | "original"
    "instruction_reason",
    "current_instruction",
    "current_input",  # "" when reflected: Q' folds the input in
    "current_output",
    "ifd_original",  # IFD(Q, A); NaN unless its status is ok
    "ifd_reflected",  # IFD(Q', A'); NaN unless its status is ok
    "ifd_original_status",
    "ifd_reflected_status",
]

# Stage 2 (selective response reflection): one row per raw row_id.
RESPONSE_DECISION_COLUMNS = [
    "row_id",
    "instruction_choice",  # carried from stage 1 for the published decision counts
    "instruction_reason",
    "response_choice",  # "reflected" | "original"
    "response_reason",
    "final_instruction",
    "final_input",
    "final_output",
    "final_ifd",
    "final_rifd",
    "final_ifd_status",
    "final_rifd_status",
    "current_ifd",  # scores of (Q*, A*)
    "current_rifd",
    "current_ifd_status",
    "current_rifd_status",
    "reflected_ifd",  # scores of (Q*, A**)
    "reflected_rifd",
    "reflected_ifd_status",
    "reflected_rifd_status",
]

# Selection adds these to the stage-2 frame; every row is kept.
SELECTION_EXTRA_COLUMNS = [
    "passes_filter",  # final IFD < 1 and final r-IFD < 1, statuses ok
    "filter_reason",
    "budget_rank",  # 1-based rank by final IFD among eligible rows passing the filter, else NA
    "selected",
    "selection_reason",
]

ARMS = ("selective", "reflected_all", "ifd_topk", "random", "longest", "full")
ARM_COLUMNS = ["arm", "row_id", "instruction", "input", "output", "source"]  # source: "raw" | "reflected"
