"""`ServeConfig`: every option of `kiln serve`, with its default written once, here.

The CLI derives `--models`, `--api-key`, ... from these fields, and a TOML file can hold them too. Two fall back
to the environment when left unset ($KILN_API_KEY, $KILN_VOCAB_DIR), so a secret need not appear on a command
line or in a file: `resolved()` applies those fallbacks, and `run` serves the resolved copy.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from kiln.model.device import resolve_device
from kiln.model.inference_dtype import InferenceDtype
from kiln.model.inference_dtype import resolve as resolve_dtype

LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")  # uvicorn's


@dataclass
class ServeConfig:
    """Options of `kiln serve`: what to serve, where, and the limits that keep one client from starving others."""

    models: Path
    """A directory of checkpoints or training runs (or a single one); each is offered under its relative path."""
    host: str = "127.0.0.1"
    """The address to bind. Anything but loopback exposes the server beyond this machine and needs an API key."""
    port: int = 8000
    """The TCP port to listen on."""
    api_key: str | None = None
    """Require 'Authorization: Bearer KEY' on /v1, /api and /metrics (unset: $KILN_API_KEY, if set)."""
    max_batch: int = 32
    """Sequences one model decodes together; more rows raise throughput and memory."""
    max_queue: int = 256
    """Requests waiting for a batch row, per model, before new ones are refused with 429."""
    max_memory_gb: float = 4.0
    """Memory for loaded models (weights + KV cache); past it the least recently used idle model is unloaded, and a
    model whose config alone asks for more is refused (503) before anything is allocated."""
    max_body_bytes: int = 4 << 20
    """The largest request body accepted; a bigger one gets 413 before it is parsed."""
    read_timeout_s: float = 10.0
    """Seconds a client has to send a whole request (headers and body), and an idle keep-alive connection stays
    open; a slower one is closed, so slow or stalled clients cannot hold connections forever. Time while the server
    has paused reading a large body (its handler has not asked for more yet) does not count."""
    vocab_dir: Path | None = None
    """GPT-2 / cl100k_base / o200k_base files for the tokenizer visualiser (unset: $KILN_VOCAB_DIR, if set)."""
    device: str = "cpu"
    """Where models run: cpu, cuda or cuda:N (a GPU serves many more streams; the KV cache lives there too)."""
    dtype: InferenceDtype = "float32"
    """Precision to decode in: float32 (exact), bfloat16 (half the memory traffic; 1.4-1.9x faster decoding on
    CPUs with AMX or AVX512-BF16, logits within bf16's precision), int8 (weights only, CPU: a quarter of the bytes,
    for one stream on CPUs without bf16 hardware; logits within 1-2%), or auto (bfloat16 where the hardware has it)."""
    log_level: str = "warning"
    """uvicorn's log level: critical, error, warning, info, debug or trace."""
    arena_dir: Path | None = None
    """Where the playground's arena keeps its votes (votes.jsonl; the leaderboard and the DPO export are read
    from it). Unset: arena/ inside the models directory."""
    access_log: bool = True
    """One line per request on stderr (method, path, model, status, tokens, time in ms) and one per model loaded."""
    data_dir: Path | None = None
    """A kiln clean output, or a directory holding several, for the playground's Data tab (unset: the tab says how
    to set it, e.g. `kiln serve --models runs data_dir=runs/clean`)."""

    def validate(self) -> None:
        """Refuse values that cannot work, naming the field (ValueError)."""
        if not self.host:
            raise ValueError("host: must not be empty")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port: must be between 0 and 65535, got {self.port}")
        for name in ("max_batch", "max_queue", "max_body_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be at least 1, got {getattr(self, name)}")
        if not self.max_memory_gb > 0:
            raise ValueError(f"max_memory_gb: must be positive, got {self.max_memory_gb}")
        if not 0 < self.read_timeout_s <= 3600:
            raise ValueError(f"read_timeout_s: must be in (0, 3600] seconds, got {self.read_timeout_s}")
        if resolve_device(self.device).type not in ("cpu", "cuda"):
            raise ValueError(f"device={self.device}: kiln serve runs on cpu or cuda")
        resolve_dtype(self.dtype, resolve_device(self.device))
        if self.data_dir is not None and not Path(self.data_dir).is_dir():
            raise ValueError(f"data_dir: {self.data_dir} is not a directory (a kiln clean output, or a folder of them)")
        if self.log_level.lower() not in LOG_LEVELS:
            raise ValueError(f"log_level: must be one of {', '.join(LOG_LEVELS)}, got {self.log_level!r}")

    def resolved(self) -> ServeConfig:
        """A copy with the environment's fallbacks applied ($KILN_API_KEY, $KILN_VOCAB_DIR) for fields left unset."""
        vocab = os.environ.get("KILN_VOCAB_DIR")
        return dataclasses.replace(
            self,
            api_key=self.api_key or os.environ.get("KILN_API_KEY") or None,
            vocab_dir=self.vocab_dir if self.vocab_dir is not None else (Path(vocab) if vocab else None),
            log_level=self.log_level.lower(),
        )

    @property
    def is_loopback(self) -> bool:
        """Whether `host` is reachable from this machine only: every address it resolves to is a loopback one.

        By address, not by name: `127.example.com` may resolve anywhere; a name that does not resolve counts as
        exposed (it needs the key, and the bind fails anyway)."""
        host = self.host.strip("[]")
        try:
            infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
        except (OSError, UnicodeError):
            return False
        addresses = {info[4][0].split("%", 1)[0] for info in infos}
        try:
            return bool(addresses) and all(ipaddress.ip_address(a).is_loopback for a in addresses)
        except ValueError:
            return False
