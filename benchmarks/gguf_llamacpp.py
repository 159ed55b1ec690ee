"""kiln's GGUF writer against llama.cpp's own converter and runtime.

    python benchmarks/gguf_llamacpp.py --llama-cpp DIR [--rounds 3] [--tokens 32]

DIR is a llama.cpp source tree with convert_hf_to_gguf.py, its conversion/ package and gguf-py/ (the
llama-cpp-python sdist on PyPI carries one under vendor/llama.cpp). Needs ../shared/data/tokenizers/gpt2:
llama.cpp's converter names a BPE pre-tokenizer only for vocabularies it knows by hash, so both models use
OpenAI's GPT-2 vocabulary (50,257 tokens); kiln's writer would also take a newly trained one.

For a GPT-2 and a Llama (GQA 8/2 heads, untied) of 4 layers x 256 wide, random weights, saved by transformers:
1. Exactness: each dtype (f32, f16, bf16, q8_0) exported by kiln (`write_gguf`) and by convert_hf_to_gguf.py;
   every tensor compared byte for byte and every metadata key compared, differences listed.
2. Time: each side as a fresh process reading the same saved directory and writing a GGUF (kiln: config.json,
   tokenizer files and safetensors read, then `write_gguf`; llama.cpp: its script), best of --rounds, ratio.
3. Runtime, if `llama_cpp` (llama-cpp-python) imports: kiln's f32 and q8_0 files loaded by llama.cpp; token
   ids of a Unicode sample against the original tokenizer, the prompt's last logits against transformers,
   and --tokens greedy tokens against transformers' `generate` on the original model.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

SHARED_GPT2 = Path(__file__).resolve().parents[2] / "shared" / "data" / "tokenizers" / "gpt2"
DTYPES = ("f32", "f16", "bf16", "q8_0")
SAMPLE = "Grüße aus Köln — 日本語のテキスト, emoji 🦙🔥, Ελληνικά, tabs\tand  spaces\n\nnumbers 1234567 don't"
PROMPT = "The quick brown fox"


def kiln_export(folder: Path, out: Path, dtype: str) -> None:
    """One export as `kiln export gguf` will do it after its HF conversion: files in, GGUF out."""
    from safetensors.torch import load_file

    from kiln.interop.gguf_export import write_gguf

    def read(name: str) -> dict:
        return json.loads((folder / name).read_text(encoding="utf-8"))

    write_gguf(
        read("config.json"),
        load_file(folder / "model.safetensors"),
        read("tokenizer.json"),
        out,
        dtype=dtype,
        tokenizer_config=read("tokenizer_config.json"),
    )


def build_models(root: Path) -> dict[str, Path]:
    import tokenizers
    import transformers
    from tokenizers import decoders, models, pre_tokenizers

    transformers.logging.set_verbosity_error()
    tok = tokenizers.Tokenizer(models.BPE.from_file(str(SHARED_GPT2 / "encoder.json"), str(SHARED_GPT2 / "vocab.bpe")))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(["<|endoftext|>"])
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>"
    )
    eot = dict(vocab_size=50257, bos_token_id=50256, eos_token_id=50256)
    torch.manual_seed(0)
    made = {
        "gpt2": transformers.GPT2LMHeadModel(
            transformers.GPT2Config(n_positions=1024, n_embd=256, n_layer=4, n_head=8, **eot)
        ),
        "llama": transformers.LlamaForCausalLM(
            transformers.LlamaConfig(
                hidden_size=256,
                intermediate_size=704,
                num_hidden_layers=4,
                num_attention_heads=8,
                num_key_value_heads=2,
                max_position_embeddings=1024,
                rope_theta=50000.0,
                **eot,
            )
        ),
    }
    folders = {}
    for name, model in made.items():
        folder = root / name
        model.save_pretrained(folder)
        fast.save_pretrained(folder)
        config = json.loads((folder / "config.json").read_text())
        if name == "gpt2":  # the converter reads n_ctx, which transformers 5 no longer writes
            config["n_ctx"] = config["n_positions"]
        (folder / "config.json").write_text(json.dumps(config, indent=2))
        folders[name] = folder
    return folders


def read_gguf(path: Path) -> tuple[dict, dict]:
    import gguf

    r = gguf.GGUFReader(path)
    meta = {k: f.contents() for k, f in r.fields.items() if not k.startswith("GGUF.")}
    tensors = {t.name: (t.tensor_type.name, np.asarray(t.data).tobytes()) for t in r.tensors}
    return meta, tensors


def compare(kiln: Path, ref: Path) -> str:
    mk, tk = read_gguf(kiln)
    mr, tr = read_gguf(ref)
    tensors = sorted(n for n in set(tk) | set(tr) if tk.get(n) != tr.get(n))
    differ = sorted(k for k in set(mk) & set(mr) if mk[k] != mr[k])
    return (
        f"{len(tk)} tensors, {'all byte-identical' if not tensors else 'DIFFERENT: ' + ', '.join(tensors)}; "
        f"keys only kiln: {sorted(set(mk) - set(mr))}, only llama.cpp: {sorted(set(mr) - set(mk))}, "
        f"differing values: {differ}"
    )


def timed(cmd: list[str], rounds: int) -> float:
    """Best wall time of `rounds` fresh processes (one thread each: the machine is shared)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, env=env)
        best = min(best, time.perf_counter() - start)
    return best


def runtime_checks(folder: Path, path: Path, n_tokens: int) -> str:
    try:
        from llama_cpp import Llama
    except ImportError:
        return "llama_cpp not importable: runtime checks skipped"
    import tokenizers
    import transformers

    model = transformers.AutoModelForCausalLM.from_pretrained(folder).eval()
    tok = tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json"))
    llm = Llama(str(path), n_ctx=256, n_threads=1, logits_all=True, verbose=False)
    ids_equal = llm.tokenize(SAMPLE.encode(), add_bos=False, special=True) == tok.encode(SAMPLE).ids
    prompt = tok.encode(PROMPT).ids
    llm.reset()
    llm.eval(prompt)
    with torch.no_grad():
        ref = model(torch.tensor([prompt])).logits[0, -1].numpy()
    logit_diff = float(np.abs(llm.scores[llm.n_tokens - 1] - ref).max())
    ours = []
    for _ in range(n_tokens):
        nxt = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        ours.append(nxt)
        llm.eval([nxt])
    with torch.no_grad():
        out = model.generate(torch.tensor([prompt]), max_new_tokens=n_tokens, do_sample=False, eos_token_id=None)
    theirs = out[0, len(prompt) :].tolist()
    llm.close()
    same = next((i for i, (a, b) in enumerate(zip(ours, theirs, strict=True)) if a != b), n_tokens)
    return (
        f"sample ids identical: {ids_equal}; prompt logits max |diff| {logit_diff:.2e}; "
        f"greedy tokens identical: {same}/{n_tokens}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--llama-cpp", type=Path, required=True, help="llama.cpp source tree (convert_hf_to_gguf.py)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--kiln-export", nargs=3, metavar=("DIR", "OUT", "DTYPE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.kiln_export:
        folder, out, dtype = args.kiln_export
        kiln_export(Path(folder), Path(out), dtype)
        return
    converter = args.llama_cpp / "convert_hf_to_gguf.py"
    if not converter.is_file() or not SHARED_GPT2.is_dir():
        sys.exit(f"needs {converter} and {SHARED_GPT2}")
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name, folder in build_models(root).items():
            for dtype in DTYPES:
                ours, ref = root / f"{name}-kiln-{dtype}.gguf", root / f"{name}-llamacpp-{dtype}.gguf"
                t_kiln = timed([sys.executable, __file__, "--llama-cpp", str(args.llama_cpp), "--kiln-export",
                                str(folder), str(ours), dtype], args.rounds)  # fmt: skip
                t_ref = timed([sys.executable, str(converter), str(folder), "--outfile", str(ref),
                               "--outtype", dtype], args.rounds)  # fmt: skip
                print(f"{name} {dtype}: kiln {t_kiln:.2f} s, llama.cpp converter {t_ref:.2f} s "
                      f"(x{t_ref / t_kiln:.2f}); {compare(ours, ref)}", flush=True)  # fmt: skip
            for dtype in ("f32", "q8_0"):
                ours = root / f"{name}-kiln-{dtype}.gguf"
                print(f"{name} {dtype} in llama.cpp: {runtime_checks(folder, ours, args.tokens)}", flush=True)


if __name__ == "__main__":
    main()
