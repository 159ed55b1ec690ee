"""`kiln eval`: bits per byte and downstream tasks (multiple choice, LAMBADA, GSM8K), scored as lm-evaluation-harness
does.

- `tasks`: the task files (llm-foundry's JSONL formats, GSM8K's) and their bundled slices;
- `requests`: an item -> (context, continuation) pairs, zero- or few-shot;
- `scoring`: log-likelihoods of continuations, each shared context encoded once and reused from the KV cache;
- `metrics`: acc / acc_norm / acc_bytes, standard errors, the centred (CORE-style) aggregate;
- `bpb`: bits per byte over documents with a sliding window;
- `gsm8k`, `generative`, `extract`, `passk`, `generation_settings`: the generative task (GSM8K): prompts (chat
  template or plain few-shot), batched generation, lm-evaluation-harness's answer extraction and exact match, pass@k;
- `results`: what results.json records for a leaderboard (the checkpoint, the aggregate's standard error);
- `harness`: an lm-evaluation-harness `LM` over a kiln model (lm_eval imported only there);
- `run`: the stage (EvalConfig, run -> EvalSummary).
"""
