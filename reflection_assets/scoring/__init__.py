"""Student scoring: IFD and r-IFD of instruction pairs (IFD = PPL(A | Q) / PPL(A), r-IFD = PPL(Q | A) / PPL(Q)).

Modules, one concern each (import what you need; this package imports nothing heavy itself):
- templates: prompt templates, prompt ids, start token, template hash
- sequences: tokenization rules -> the (context, scored) id sequences of each pass, statuses
- engine: batched forward passes, logits only at scored positions
- metrics: losses -> ifd_ppl / ifd_loss with a status (`PairScore` rows)
- cache: the `student_scores` DuckDB cache (short connections, lock retries)
- scorer: `score_pairs` / `scores_frame`, the entry points for assets and the CLI
- reference: the one-sample-at-a-time loop the engine is measured against
- prefixes: which sequences share a prompt prefix that runs once
- statuses, student: status names, the loaded student (progress lines: reflection_assets.progress)
"""
