"""kiln.generate: sampling strategies and KV-cached autoregressive decoding, plain or streaming."""

from kiln.generate.engine import Completion, TokenEvent, generate, generate_batch, stream, stream_batch
from kiln.generate.sampling import SamplingParams
from kiln.generate.stops import StopMatcher

__all__ = [
    "Completion",
    "SamplingParams",
    "StopMatcher",
    "TokenEvent",
    "generate",
    "generate_batch",
    "stream",
    "stream_batch",
]
