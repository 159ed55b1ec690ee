"""An SFT checkpoint chats through `/v1/chat/completions` with the `openai` client, streaming and not, exactly
as kiln's engine decodes the server's rendering of the conversation."""

from __future__ import annotations

import pytest
from serve_support import run_server

from helpers import run_cli
from kiln.generate import SamplingParams, generate
from kiln.model.checkpoint import load_checkpoint
from kiln.tokenizer.chat import render_chat_ids

openai = pytest.importorskip("openai")


def test_an_sft_model_chats_through_the_openai_client(base_model, chat_file, tmp_path):
    models = tmp_path / "models"
    rc, _, err = run_cli(["sft", str(base_model), str(chat_file), "device=cpu", "max_steps=30", "batch_size=8",
                          "lr=3e-3", "warmup_steps=3", "eval_interval=30", f"out_dir={models / 'chat'}"])  # fmt: skip
    assert rc == 0, err
    model, tok, _ = load_checkpoint(models / "chat")
    messages = [{"role": "system", "content": "You repeat words."}, {"role": "user", "content": "Say apple, river."}]
    prompt = render_chat_ids(tok, [(m["role"], m["content"]) for m in messages])
    stops = (tok.special_tokens["<|im_end|>"], tok.special_tokens["<|endoftext|>"])
    expected = generate(model, prompt, SamplingParams(temperature=0, max_new_tokens=20, stop_token_ids=stops))
    with run_server(models) as server:
        client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="unused")
        reply = client.chat.completions.create(model="chat", messages=messages, max_tokens=20, temperature=0)
        streamed = client.chat.completions.create(
            model="chat", messages=messages, max_tokens=20, temperature=0, stream=True
        )
        pieces = [c.choices[0].delta.content or "" for c in streamed if c.choices]
    text = tok.decode([t for t in expected.tokens if t not in stops])
    assert reply.choices[0].message.content == text == "".join(pieces)
    assert reply.usage.prompt_tokens == len(prompt)
    assert reply.choices[0].finish_reason == ("stop" if expected.finish_reason == "stop" else "length")
