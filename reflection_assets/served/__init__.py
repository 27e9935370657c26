"""The student on an OpenAI-compatible vLLM server: the same sequences, scored and generated remotely.

Modules, one concern each:
- client: `/v1/models`, `/v1/completions` (token-id prompts, `prompt_logprobs`, greedy generation)
  and vLLM's LoRA routes, with the shared retry policy (`reflection_assets.http_retries`)
- scoring: `ServedLossEngine`, the in-process `LossEngine`'s interface over prompt log-probabilities
- evaluation: generation, held-out likelihood and lm-eval for the base and every adapter
- adapters: each arm's LoRA as a served name (listed by its folder, or loaded at run time)
"""
