"""What a decode precision costs in quality: a trained model scored in float32, bfloat16 and int8 weights on the same
text, teacher-forced (every position's next-token distribution, as decoding sees it).

    python benchmarks/decode_dtypes.py --checkpoint DIR [--text FILE] [--rows 32]

Prints, per precision, the mean cross-entropy of the text's next tokens and the share of positions whose argmax
(the greedy token) equals float32's, with the largest logit difference relative to float32's largest logit. Speed
is benchmarks/generate.py's job; this is the other half of choosing `dtype=` for `kiln generate` / `kiln serve`.
The default text is the last 200 kB of the bundled TinyStories (the quickstart's model holds out nothing from it, so
use `--text` for text a model never saw).
"""

from __future__ import annotations

import argparse
import copy
import gzip
from pathlib import Path

import torch
import torch.nn.functional as F

from kiln.model import cpu_fast
from kiln.model.checkpoint import load_checkpoint
from kiln.model.inference_dtype import prepare

STORIES = Path(__file__).resolve().parents[1] / "src" / "kiln" / "assets" / "quickstart" / "tinystories.txt.gz"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True, type=Path)
    ap.add_argument("--text", type=Path, help="a UTF-8 text file (default: the end of the bundled TinyStories)")
    ap.add_argument("--rows", type=int, default=32, help="windows of the model's context to score")
    args = ap.parse_args()

    model, tok, _ = load_checkpoint(args.checkpoint)
    model.eval()
    if args.text:
        text = args.text.read_text(encoding="utf-8")
    else:
        text = gzip.decompress(STORIES.read_bytes()).decode("utf-8")[-200_000:]
    t = model.config.block_size
    ids = tok.encode(text)
    rows = min(args.rows, len(ids) // (t + 1))
    if rows < 1:
        raise SystemExit(f"{args.text or STORIES}: fewer than {t + 1} tokens")
    batch = torch.tensor(ids[: rows * (t + 1)]).view(rows, t + 1)
    x, y = batch[:, :-1], batch[:, 1:]

    def logits(m: torch.nn.Module) -> torch.Tensor:
        with torch.inference_mode(), cpu_fast.packed_linears(m):
            return m(x, all_logits=True)[0].float()

    ref = logits(model)
    print(f"{args.checkpoint}: {model.num_params():,} parameters; {rows} x {t} positions, torch {torch.__version__}")
    print(f"{'dtype':<10} {'cross-entropy':>14} {'argmax = fp32':>14} {'max |dlogit| / max |logit|':>27}")
    for name in ("float32", "bfloat16", "int8"):
        lg = ref if name == "float32" else logits(prepare(copy.deepcopy(model), name))
        ce = F.cross_entropy(lg.reshape(-1, lg.shape[-1]), y.reshape(-1)).item()
        agree = (lg.argmax(-1) == ref.argmax(-1)).float().mean().item()
        err = ((lg - ref).abs().max() / ref.abs().max()).item()
        print(f"{name:<10} {ce:>14.4f} {agree:>14.2%} {err:>27.4f}")


if __name__ == "__main__":
    main()
