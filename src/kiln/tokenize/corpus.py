"""Reading a text corpus: plain text, JSONL and Parquet documents, cut into parts that workers take in parallel.

What a document is, by file type:

* `.txt` (also `.md`): the whole file is one document, or, with a `separator` such as "<|endoftext|>" (the
  TinyStories files), each piece between separators is one (stripped of surrounding whitespace);
* `.jsonl`: one JSON object per line, the document is its `text_field` (default "text");
* `.parquet`: one row per document, `text_field` column (what `kiln clean` writes).
`.txt.gz` / `.jsonl.gz` are read whole. A directory means every such file under it, in sorted order.

Large files are cut into *parts* of about `part_bytes` so that several processes share one file. Cuts are
placed where the tokens cannot change: at a line start (JSONL), right after a separator, or (plain text)
after a newline that follows a visible ASCII character and precedes an ASCII letter or digit, which no chunk
of the GPT-2, GPT-4 or o200k split patterns spans (tested against all three). Parquet files are cut between row groups.

Bytes that are not UTF-8 are decoded as U+FFFD and counted, never an error: web text is like that. So is a JSONL
string's lone surrogate escape ("\\ud800"), which no UTF-8 encoder (nor so any tokenizer) would take.
"""

from __future__ import annotations

import codecs
import gzip
import itertools
import json
import mmap
import re
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

TEXT_SUFFIXES = (".txt", ".md")
JSONL_SUFFIXES = (".jsonl",)
PARQUET_SUFFIXES = (".parquet",)
# After a newline that follows a visible ASCII character and precedes an ASCII letter or digit. The character
# before matters for GPT-2's `\s++$`: a piece ending in "\n\n" would make that one chunk, not two.
SAFE_CUT = re.compile(rb"(?<=[!-~])\n(?=[A-Za-z0-9])")
SAFE_CUT_TEXT = re.compile(r"(?<=[!-~])\n(?=[A-Za-z0-9])")
# Where a line has no newline to cut at (a 50 MB one-line text): before a space that sits between two ASCII
# letters. The left piece ends a letter run and the right one starts with " word", which every one of those split
# patterns makes one chunk of too, so the cut changes no token either. Used only past the last newline cut.
SAFE_CUT_SPACE = re.compile(r"(?<=[A-Za-z]) (?=[A-Za-z])")
# A JSON string can spell a lone UTF-16 surrogate ("\ud800"), which is no character: no encoder takes it.
SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True)
class Part:
    """A slice of one input file: bytes [start, end) of a text/JSONL file, or row groups [start, end)."""

    index: int
    path: str
    fmt: str  # "txt" | "jsonl" | "parquet"
    start: int
    end: int
    size: int  # bytes of input it covers (for progress and balance)
    last: bool  # the slice reaches the end of the file (a plain-text document ends there)

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class ReadStats:
    """What reading found besides documents: replaced bytes and skipped records, with the first problems."""

    documents: int = 0
    bytes: int = 0  # input bytes read
    text_bytes: int = 0  # UTF-8 bytes of the document text handed on (iter_corpus)
    replaced_bytes: int = 0
    skipped_records: int = 0
    problems: list[str] = field(default_factory=list)

    def problem(self, message: str) -> None:
        self.skipped_records += 1
        if len(self.problems) < 5:
            self.problems.append(message)

    def add(self, other: ReadStats) -> None:
        self.documents += other.documents
        self.bytes += other.bytes
        self.text_bytes += other.text_bytes
        self.replaced_bytes += other.replaced_bytes
        self.skipped_records += other.skipped_records
        self.problems.extend(other.problems[: max(0, 5 - len(self.problems))])


def file_format(path: Path) -> str | None:
    name = path.name.lower().removesuffix(".gz")
    if name.endswith(TEXT_SUFFIXES):
        return "txt"
    if name.endswith(JSONL_SUFFIXES):
        return "jsonl"
    if name.endswith(PARQUET_SUFFIXES) and not path.name.lower().endswith(".gz"):
        return "parquet"
    return None


def find_inputs(inputs: Sequence[str | Path]) -> list[Path]:
    """Files named, plus every readable file under directories named (sorted). Clear errors for nothing found."""
    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(
                p.resolve()
                for p in path.rglob("*")
                if p.is_file()
                and file_format(p)
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )  # hidden files and folders (kiln clean's .stage1/, editors' backups) are not corpus
            if not found:
                raise ValueError(f"{path}: no .txt, .md, .jsonl or .parquet files in this directory")
            files.extend(found)
        elif path.is_file():
            if file_format(path) is None:
                raise ValueError(f"{path}: unsupported file type (use .txt, .md, .jsonl or .parquet, optionally .gz)")
            files.append(path.resolve())
        else:
            raise FileNotFoundError(f"corpus input not found: {path}")
    if not files:
        raise ValueError("no corpus files given")
    return files


def plan_parts(files: Sequence[Path], part_bytes: int, separator: str | None = None) -> list[Part]:
    """Cut every file into parts of about `part_bytes` at safe places (see the module docstring)."""
    parts: list[Part] = []
    for path in files:
        fmt = file_format(path)
        assert fmt is not None
        size = path.stat().st_size
        if fmt == "parquet":
            for start, end, nbytes in _row_group_ranges(path, part_bytes):
                parts.append(Part(len(parts), str(path), fmt, start, end, nbytes, end == -1))
            continue
        if path.name.lower().endswith(".gz") or size <= part_bytes:
            parts.append(Part(len(parts), str(path), fmt, 0, size, size, True))
            continue
        cuts = _byte_cuts(path, size, part_bytes, fmt, separator)
        bounds = [0, *cuts, size]
        for start, end in itertools.pairwise(bounds):
            parts.append(Part(len(parts), str(path), fmt, start, end, end - start, end == size))
    return parts


def _byte_cuts(path: Path, size: int, part_bytes: int, fmt: str, separator: str | None) -> list[int]:
    cuts: list[int] = []
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        pos = part_bytes
        while pos < size:
            cut = _next_cut(data, pos, fmt, separator)
            if cut is None or cut >= size:
                break
            if not cuts or cut > cuts[-1]:
                cuts.append(cut)
            pos = cut + part_bytes
    return cuts


def _next_cut(data: mmap.mmap, pos: int, fmt: str, separator: str | None) -> int | None:
    """The first safe cut at or after `pos`, or None."""
    if fmt == "jsonl":
        nl = data.find(b"\n", pos)
        return None if nl < 0 else nl + 1
    if separator:
        sep = separator.encode("utf-8")
        at = data.find(sep, pos)
        return None if at < 0 else at + len(sep)
    window = 1 << 20
    while pos < len(data):
        m = SAFE_CUT.search(data[pos : pos + window])
        if m:
            return pos + m.start() + 1
        pos += window
    return None


def _row_group_ranges(path: Path, part_bytes: int) -> list[tuple[int, int, int]]:
    """(first, end, bytes) runs of row groups of about part_bytes; the last run's end is -1 (to the end)."""
    import pyarrow.parquet as pq

    try:
        meta = pq.ParquetFile(path).metadata
    except Exception as e:  # pyarrow raises several types for a corrupt file
        raise ValueError(f"{path}: not a readable Parquet file ({e})") from None
    ranges: list[tuple[int, int, int]] = []
    start, acc = 0, 0
    for i in range(meta.num_row_groups):
        acc += meta.row_group(i).total_byte_size
        if acc >= part_bytes and i + 1 < meta.num_row_groups:
            ranges.append((start, i + 1, acc))
            start, acc = i + 1, 0
    ranges.append((start, -1, acc))
    return ranges


# ------------------------------------------------------------------------------------------------------ reading


class _Replacements:
    """A codec error handler that replaces undecodable bytes with U+FFFD, counting them."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, err: UnicodeError) -> tuple[str, int]:
        assert isinstance(err, UnicodeDecodeError)
        self.count += err.end - err.start
        return "\ufffd", err.end


_REPLACEMENTS = _Replacements()
codecs.register_error("kiln-count-replace", _REPLACEMENTS)


def decode_counting(data: bytes, stats: ReadStats) -> str:
    """UTF-8 text of `data` (a BOM dropped); invalid bytes become U+FFFD and are added to stats.replaced_bytes."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        before = _REPLACEMENTS.count
        text = data.decode("utf-8", errors="kiln-count-replace")
        stats.replaced_bytes += _REPLACEMENTS.count - before
    return text.removeprefix("\ufeff")


def _read_bytes(part: Part) -> bytes:
    path = Path(part.path)
    if path.name.lower().endswith(".gz"):
        try:
            return gzip.decompress(path.read_bytes())
        except (OSError, EOFError) as e:
            raise ValueError(f"{path}: not a valid gzip file ({e})") from None
    with open(path, "rb") as f:
        f.seek(part.start)
        return f.read(part.end - part.start)


def read_part(
    part: Part, stats: ReadStats, text_field: str = "text", separator: str | None = None
) -> Iterator[tuple[str, bool]]:
    """(text, ends_document) for each document or document piece in `part`, in order."""
    if part.fmt == "parquet":
        yield from _read_parquet(part, stats, text_field)
        return
    raw = _read_bytes(part)
    stats.bytes += len(raw)
    text = decode_counting(raw, stats)
    if part.fmt == "jsonl":
        yield from _read_jsonl(part, text, stats, text_field)
    elif separator:
        pieces = text.split(separator)
        for i, piece in enumerate(pieces):
            complete = i < len(pieces) - 1 or part.last
            doc = piece.strip()
            if doc:
                stats.documents += complete
                yield doc, complete
    elif text:
        stats.documents += part.last
        yield text, part.last


def _read_jsonl(part: Part, text: str, stats: ReadStats, text_field: str) -> Iterator[tuple[str, bool]]:
    # Line numbers are only known within the part; the byte offset says where in the file.
    for lineno, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        where = f"{part.path} (part at byte {part.start}, line {lineno})"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            stats.problem(f"{where}: malformed JSON ({e.msg})")
            continue
        value = record.get(text_field) if isinstance(record, dict) else None
        if not isinstance(value, str):
            stats.problem(f"{where}: no string field {text_field!r}")
            continue
        if "\\u" in line and SURROGATE.search(value):
            value, n = SURROGATE.subn("\ufffd", value)  # like an undecodable byte: U+FFFD, counted
            stats.replaced_bytes += n
        if value:
            stats.documents += 1
            yield value, True


def _read_parquet(part: Part, stats: ReadStats, text_field: str) -> Iterator[tuple[str, bool]]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(part.path)
        end = pf.metadata.num_row_groups if part.end == -1 else part.end
        if text_field not in pf.schema_arrow.names:
            raise ValueError(f"{part.path}: no column {text_field!r} (columns: {', '.join(pf.schema_arrow.names)})")
        table = pf.read_row_groups(list(range(part.start, end)), columns=[text_field])
    except ValueError:
        raise
    except Exception as e:  # corrupt pages surface as various pyarrow errors
        raise ValueError(f"{part.path}: cannot read Parquet row groups {part.start}..{part.end} ({e})") from None
    for value in table.column(0).to_pylist():
        if not isinstance(value, str):
            stats.problem(f"{part.path}: a row with no text")
            continue
        stats.bytes += len(value.encode("utf-8"))
        if value:
            stats.documents += 1
            yield value, True


def iter_corpus(
    inputs: Sequence[str | Path],
    stats: ReadStats | None = None,
    text_field: str = "text",
    separator: str | None = None,
    max_bytes: int | None = None,
) -> Iterator[str]:
    """Every document's text, in order (pieces of a cut document joined back), up to about max_bytes."""
    stats = stats if stats is not None else ReadStats()
    files = find_inputs(inputs)
    pending: list[str] = []
    for part in plan_parts(files, part_bytes=64 << 20, separator=separator):
        for text, complete in read_part(part, stats, text_field, separator):
            pending.append(text)
            stats.text_bytes += len(text.encode("utf-8"))
            if complete:
                yield "".join(pending)
                pending.clear()
            if max_bytes is not None and stats.text_bytes >= max_bytes:
                if pending:
                    yield "".join(pending)
                return
    if pending:
        yield "".join(pending)


def cut_segments(text: str, target: int) -> list[str]:
    """`text` in pieces of about `target` characters, cut only at safe places (see the module docstring): after a
    newline, or, where none is left, before a space between letters."""
    if len(text) <= target * 1.5:
        return [text]
    pieces: list[str] = []
    start = 0
    # Once a search to the end of the text finds no cut, no later one can: remember it, so that a 50 MB line
    # costs one scan, not one per piece.
    left = {SAFE_CUT_TEXT: True, SAFE_CUT_SPACE: True}
    while len(text) - start > target * 1.5:
        pos = start + target
        near = min(len(text), pos + target)
        cut = None
        # The first newline cut within a target's length, else a space cut there; failing both, the first of either
        # further on (no text is left uncut that has a safe place).
        for pattern, endpos in (
            (SAFE_CUT_TEXT, near),
            (SAFE_CUT_SPACE, near),
            (SAFE_CUT_TEXT, None),
            (SAFE_CUT_SPACE, None),
        ):
            if not left[pattern]:
                continue
            m = pattern.search(text, pos) if endpos is None else pattern.search(text, pos, endpos)
            if m:
                cut = m.start() + 1 if pattern is SAFE_CUT_TEXT else m.start()  # after the newline, before the space
                break
            if endpos is None:
                left[pattern] = False
        if cut is None:
            break
        pieces.append(text[start:cut])
        start = cut
    pieces.append(text[start:])
    return pieces
