"""One query that follows a raw row through every stage of the warehouse (DuckDB).

Assumed tables, one per asset and all keyed by the raw row's row_id:
- raw_instructions (schema.RAW_COLUMNS), instruction_reflections (row_id, outcome,
  new_instruction, new_output), response_reflections (row_id, outcome, new_output);
- instruction_ifd_scores: decide_instruction's output (INSTRUCTION_DECISION_COLUMNS);
- response_scores: decide_response's output (RESPONSE_DECISION_COLUMNS);
- selected_dataset: select_rows's output (adds SELECTION_EXTRA_COLUMNS);
- arm_datasets: ARM_COLUMNS.
The answer is long-form, one row per version, score or decision, ordered by `step`:
step, stage, version, instruction, input, output, outcome, ifd, rifd, status, decision, reason, arm.
"""

from __future__ import annotations

LINEAGE_COLUMNS = [
    "step", "stage", "version", "instruction", "input", "output",
    "outcome", "ifd", "rifd", "status", "decision", "reason", "arm",
]

LINEAGE_SQL = """
WITH target AS (SELECT CAST(? AS VARCHAR) AS row_id),
lineage AS (
    SELECT 1 AS step, 'raw' AS stage, 'original' AS version,
           r.instruction, r.input, r.output,
           NULL::VARCHAR AS outcome, NULL::DOUBLE AS ifd, NULL::DOUBLE AS rifd, NULL::VARCHAR AS status,
           NULL::VARCHAR AS decision, NULL::VARCHAR AS reason, NULL::VARCHAR AS arm
    FROM raw_instructions r JOIN target USING (row_id)
    UNION ALL
    SELECT 2, 'instruction_reflection', 'reflected', ir.new_instruction, '', ir.new_output,
           ir.outcome, NULL, NULL, NULL, NULL, NULL, NULL
    FROM instruction_reflections ir JOIN target USING (row_id)
    UNION ALL
    SELECT 3, 'instruction_score', 'original', NULL, NULL, NULL,
           NULL, s.ifd_original, NULL, s.ifd_original_status, NULL, NULL, NULL
    FROM instruction_ifd_scores s JOIN target USING (row_id)
    UNION ALL
    SELECT 3, 'instruction_score', 'reflected', NULL, NULL, NULL,
           NULL, s.ifd_reflected, NULL, s.ifd_reflected_status, NULL, NULL, NULL
    FROM instruction_ifd_scores s JOIN target USING (row_id)
    UNION ALL
    SELECT 4, 'instruction_decision', 'current', s.current_instruction, s.current_input, s.current_output,
           NULL, NULL, NULL, NULL, s.instruction_choice, s.instruction_reason, NULL
    FROM instruction_ifd_scores s JOIN target USING (row_id)
    UNION ALL
    SELECT 5, 'response_reflection', 'reflected', NULL, NULL, rr.new_output,
           rr.outcome, NULL, NULL, NULL, NULL, NULL, NULL
    FROM response_reflections rr JOIN target USING (row_id)
    UNION ALL
    SELECT 6, 'response_score', 'current', NULL, NULL, NULL,
           NULL, rs.current_ifd, rs.current_rifd,
           rs.current_ifd_status || '/' || rs.current_rifd_status, NULL, NULL, NULL
    FROM response_scores rs JOIN target USING (row_id)
    UNION ALL
    SELECT 6, 'response_score', 'reflected', NULL, NULL, NULL,
           NULL, rs.reflected_ifd, rs.reflected_rifd,
           rs.reflected_ifd_status || '/' || rs.reflected_rifd_status, NULL, NULL, NULL
    FROM response_scores rs JOIN target USING (row_id)
    UNION ALL
    SELECT 7, 'response_decision', 'final', rs.final_instruction, rs.final_input, rs.final_output,
           NULL, rs.final_ifd, rs.final_rifd, rs.final_ifd_status || '/' || rs.final_rifd_status,
           rs.response_choice, rs.response_reason, NULL
    FROM response_scores rs JOIN target USING (row_id)
    UNION ALL
    SELECT 8, 'selection', 'final', NULL, NULL, NULL,
           NULL, sd.final_ifd, sd.final_rifd, sd.filter_reason,
           CASE WHEN sd.selected THEN 'selected' ELSE 'not_selected' END, sd.selection_reason, NULL
    FROM selected_dataset sd JOIN target USING (row_id)
    UNION ALL
    SELECT DISTINCT 9, 'arm', a.source, a.instruction, a.input, a.output,
           NULL, NULL, NULL, NULL, NULL, NULL, a.arm  -- once per arm, whichever seeds drew the row
    FROM arm_datasets a JOIN target USING (row_id)
)
SELECT step, stage, version, instruction, input, output, outcome, ifd, rifd, status, decision, reason, arm
FROM lineage
ORDER BY step, version, arm
"""
