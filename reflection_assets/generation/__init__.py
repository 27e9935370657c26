"""In-process generation: one engine for the teacher stages and evaluation.

Why it is fast: a prompt is computed once. Guided steps continue from the key/value cache (only the
appended marker tokens are new), the prompt prefix shared by a batch (system turn) runs once, batches
are sized by a token budget and sorted by length, finished rows leave the batch at once, and the cache
grows in place instead of being copied at every token. Why it is exact: every row sees the same token
ids at the same positions as a fresh `model.generate` call on its full text would (re-tokenized at
every guided step), and greedy choice is taken from the same logits.

Modules: `engine` (requests, outputs, the decoding loop), `cache` (an in-place growing key/value
cache), `stops` (end tokens and stop strings), `requests` (what a caller asks for, including the
step protocol a guided plan continues through: `reflection_assets.teacher.guided_run`).
"""
