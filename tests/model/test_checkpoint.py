"""Tests for kiln.model.checkpoint (save/load, strict and safe loading) and kiln.utils.io.atomic_write."""

from __future__ import annotations

import json
import os
import pathlib
import pickle
import stat
from pathlib import Path

import pytest
import torch

from kiln.config import to_dict
from kiln.model import GPT, GPTConfig
from kiln.model.checkpoint import CONFIG, TOKENIZER_DIR, WEIGHTS, CheckpointError, load_checkpoint, save_checkpoint
from kiln.tokenizer import ByteTokenizer, CharTokenizer
from kiln.utils.io import atomic_write, atomic_write_text

SHAPE = dict(vocab_size=40, block_size=16, n_layer=2, n_head=2, n_embd=16)


def _model(seed: int = 0, **overrides) -> GPT:
    torch.manual_seed(seed)
    model = GPT(GPTConfig(**{**SHAPE, **overrides}))
    with torch.no_grad():  # make every tensor (norm gains, biases too) distinct from its init value
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model.eval()


@pytest.fixture
def saved(tmp_path: Path) -> tuple[Path, GPT, CharTokenizer]:
    model = _model()
    tok = CharTokenizer.train("hello world, to be or not to be")
    save_checkpoint(tmp_path / "ckpt", model, tok, {"step": 7})
    return tmp_path / "ckpt", model, tok


def _edit_config(directory: Path, edit) -> None:
    path = directory / CONFIG
    data = json.loads(path.read_text(encoding="utf-8"))
    edit(data)
    path.write_text(json.dumps(data), encoding="utf-8")


# -------------------------------------------------------------------------------------------- round trips


@pytest.mark.parametrize(
    "overrides",
    [
        dict(tie_embeddings=True),
        dict(tie_embeddings=False),
        dict(
            tie_embeddings=False,
            pos_encoding="rope",
            norm="rmsnorm",
            activation="swiglu",
            bias=False,
            n_kv_head=1,
        ),
    ],
    ids=["tied", "untied", "llama-style"],
)
def test_round_trip_weights_exact(tmp_path: Path, overrides: dict) -> None:
    model = _model(**overrides)
    save_checkpoint(tmp_path, model, None)
    loaded, tok, _ = load_checkpoint(tmp_path)
    assert tok is None
    assert loaded.config == model.config
    assert not loaded.training  # returned in eval mode
    expected, got = model.state_dict(), loaded.state_dict()
    assert expected.keys() == got.keys()
    for name, tensor in expected.items():
        assert got[name].dtype == tensor.dtype, name
        assert torch.equal(got[name], tensor), name
    ids = torch.randint(0, SHAPE["vocab_size"], (2, 9), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(loaded(ids)[0], model(ids)[0])
    if overrides["tie_embeddings"]:
        # still one shared matrix, not two copies that would drift apart in further training
        assert loaded.lm_head.weight is loaded.wte.weight
    else:
        assert loaded.lm_head.weight.data_ptr() != loaded.wte.weight.data_ptr()
        assert not torch.equal(loaded.lm_head.weight, loaded.wte.weight)


def test_round_trip_tokenizer_and_meta(saved) -> None:
    directory, _, tok = saved
    assert (directory / TOKENIZER_DIR).is_dir()
    _, loaded_tok, meta = load_checkpoint(directory)
    assert isinstance(loaded_tok, CharTokenizer)
    assert loaded_tok.chars == tok.chars
    assert loaded_tok.encode("to be") == tok.encode("to be")
    assert meta["step"] == 7


def test_round_trip_byte_tokenizer(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, _model(), ByteTokenizer())
    _, tok, _ = load_checkpoint(tmp_path)
    assert isinstance(tok, ByteTokenizer)


def test_config_json_is_written(saved) -> None:
    directory, model, _ = saved
    assert sorted(p.name for p in directory.iterdir()) == sorted([WEIGHTS, CONFIG, TOKENIZER_DIR])
    config = json.loads((directory / CONFIG).read_text(encoding="utf-8"))
    assert config["model"] == to_dict(model.config)
    assert config["step"] == 7


def test_save_overwrites_an_existing_checkpoint(saved) -> None:
    directory, _, _ = saved
    other = _model(seed=1, tie_embeddings=False)
    save_checkpoint(directory, other, None, {"step": 8})
    loaded, _, meta = load_checkpoint(directory)
    assert meta["step"] == 8
    assert loaded.config.tie_embeddings is False
    assert all(
        torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), other.state_dict().values(), strict=True)
    )
    assert not [p for p in directory.iterdir() if p.name.endswith(".tmp")]


# -------------------------------------------------------------------------------------------- broken weights


def test_missing_weights(saved) -> None:
    directory, _, _ = saved
    (directory / WEIGHTS).unlink()
    with pytest.raises(CheckpointError, match="is missing") as exc:
        load_checkpoint(directory)
    assert WEIGHTS in str(exc.value)


@pytest.mark.parametrize("cut", ["half", "header-only", "8-bytes", "empty"])
def test_truncated_weights(saved, cut: str) -> None:
    directory, _, _ = saved
    path = directory / WEIGHTS
    data = path.read_bytes()
    header_len = int.from_bytes(data[:8], "little")
    keep = {"half": len(data) // 2, "header-only": 8 + header_len, "8-bytes": 8, "empty": 0}[cut]
    path.write_bytes(data[:keep])
    with pytest.raises(CheckpointError, match="corrupt or truncated") as exc:
        load_checkpoint(directory)
    assert str(path) in str(exc.value)


@pytest.mark.parametrize("where", ["length-prefix", "header-json"])
def test_corrupted_header(saved, where: str) -> None:
    directory, _, _ = saved
    path = directory / WEIGHTS
    data = bytearray(path.read_bytes())
    if where == "length-prefix":
        data[0:8] = (2**40).to_bytes(8, "little")
    else:
        data[10:30] = b"\xff" * 20
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(directory)
    assert str(path) in str(exc.value)


def test_corrupted_tensor_data_is_detected(saved) -> None:
    directory, _, _ = saved
    path = directory / WEIGHTS
    data = bytearray(path.read_bytes())
    header_end = 8 + int.from_bytes(data[:8], "little")
    middle = (header_end + len(data)) // 2
    data[middle : middle + 64] = b"\xff" * 64  # NaN patterns in the middle of the tensor bytes
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=WEIGHTS):
        load_checkpoint(directory)


def test_torch_pickle_named_safetensors_fails_cleanly(saved) -> None:
    directory, model, _ = saved
    torch.save(model.state_dict(), directory / WEIGHTS)
    with pytest.raises(CheckpointError, match="corrupt") as exc:
        load_checkpoint(directory)
    assert str(directory / WEIGHTS) in str(exc.value)


class _Touch:
    """Unpickling this creates a file: proof that a loader ran code from the checkpoint."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.path),))


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_malicious_pickle_is_never_unpickled(saved, tmp_path: Path, protocol: int) -> None:
    directory, _, _ = saved
    sentinel = tmp_path / "pwned"
    payload = pickle.dumps({"wte.weight": _Touch(sentinel)}, protocol=protocol)
    assert not sentinel.exists()
    (directory / WEIGHTS).write_bytes(payload)
    with pytest.raises(CheckpointError):
        load_checkpoint(directory)
    assert not sentinel.exists()


# -------------------------------------------------------------------------------------------- broken config


def test_missing_config(saved) -> None:
    directory, _, _ = saved
    (directory / CONFIG).unlink()
    with pytest.raises(CheckpointError, match=r"config\.json is missing") as exc:
        load_checkpoint(directory)
    assert "not a kiln checkpoint" in str(exc.value)


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not a kiln checkpoint"):
        load_checkpoint(tmp_path / "nope")


@pytest.mark.parametrize(
    "content", [b"{oops", b"", b"[1, 2]", b'"text"', b"null", b'{"step": 1}', b'{"model": 3}', b"\xff\xfe"]
)
def test_unreadable_config(saved, content: bytes) -> None:
    directory, _, _ = saved
    (directory / CONFIG).write_bytes(content)
    with pytest.raises(CheckpointError, match="unreadable model config") as exc:
        load_checkpoint(directory)
    assert str(directory / CONFIG) in str(exc.value)


def test_config_shape_differs_from_weights(saved) -> None:
    directory, _, _ = saved
    _edit_config(directory, lambda c: c["model"].update(n_embd=32))
    with pytest.raises(CheckpointError, match="wrong shape") as exc:
        load_checkpoint(directory)
    msg = str(exc.value)
    assert "does not match" in msg
    assert WEIGHTS in msg and CONFIG in msg
    assert "blocks.0.attn" in msg  # names the mismatched tensors (the first five, then "...")


def test_config_with_more_layers_than_weights(saved) -> None:
    directory, _, _ = saved
    _edit_config(directory, lambda c: c["model"].update(n_layer=3))
    with pytest.raises(CheckpointError, match=r"missing: blocks\.2\."):
        load_checkpoint(directory)


def test_config_with_fewer_layers_than_weights(saved) -> None:
    directory, _, _ = saved
    _edit_config(directory, lambda c: c["model"].update(n_layer=1))
    with pytest.raises(CheckpointError, match=r"unexpected: blocks\.1\."):
        load_checkpoint(directory)


def test_config_untied_but_weights_tied(saved) -> None:
    directory, _, _ = saved  # saved tied: the file holds only one of the two matrices
    _edit_config(directory, lambda c: c["model"].update(tie_embeddings=False))
    with pytest.raises(CheckpointError, match="missing"):
        load_checkpoint(directory)


def test_unknown_key_in_model_config(saved) -> None:
    directory, _, _ = saved
    _edit_config(directory, lambda c: c["model"].update(n_layr=2))
    with pytest.raises(CheckpointError, match="n_layr") as exc:
        load_checkpoint(directory)
    assert "did you mean 'n_layer'" in str(exc.value)


def test_invalid_model_config_value(saved) -> None:
    directory, _, _ = saved
    _edit_config(directory, lambda c: c["model"].update(n_head=3))  # 16 % 3 != 0
    with pytest.raises(CheckpointError, match="divisible"):
        load_checkpoint(directory)


def test_wrong_type_in_model_config(saved) -> None:
    directory, _, _ = saved
    _edit_config(directory, lambda c: c["model"].update(n_layer="2"))
    with pytest.raises(CheckpointError, match="n_layer"):
        load_checkpoint(directory)


def test_checkpoint_error_is_a_value_error() -> None:
    assert issubclass(CheckpointError, ValueError)  # the CLI turns ValueError into exit code 2


# -------------------------------------------------------------------------------------------- atomic_write


def test_atomic_write_replaces_content(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "f.txt"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two")
    assert target.read_text(encoding="utf-8") == "two"
    assert os.listdir(target.parent) == ["f.txt"]


def test_atomic_write_failure_keeps_original(tmp_path: Path) -> None:
    target = tmp_path / "f.bin"
    target.write_bytes(b"original")

    def write(p: Path) -> None:
        p.write_bytes(b"half a new fi")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        atomic_write(target, write)
    assert target.read_bytes() == b"original"
    assert os.listdir(tmp_path) == ["f.bin"]  # the temp file was removed


def test_atomic_write_failure_on_new_file_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "new.bin"

    def write(p: Path) -> None:
        raise KeyboardInterrupt  # BaseException too: an interrupted save must not leave a temp file

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, write)
    assert os.listdir(tmp_path) == []


def test_atomic_write_failing_callback_that_removed_its_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "f.bin"
    target.write_bytes(b"original")

    def write(p: Path) -> None:
        p.unlink()
        raise OSError("gone")

    with pytest.raises(OSError, match="gone"):
        atomic_write(target, write)
    assert target.read_bytes() == b"original"
    assert os.listdir(tmp_path) == ["f.bin"]


def test_failed_checkpoint_save_keeps_previous_weights(saved, monkeypatch: pytest.MonkeyPatch) -> None:
    directory, model, _ = saved
    before = (directory / WEIGHTS).read_bytes()

    def boom(*args, **kwargs):
        raise RuntimeError("out of disk")

    monkeypatch.setattr("kiln.model.checkpoint.save_model", boom)
    with pytest.raises(RuntimeError):
        save_checkpoint(directory, _model(seed=5), None)
    assert (directory / WEIGHTS).read_bytes() == before
    assert not [p for p in directory.iterdir() if p.name.endswith(".tmp")]
    loaded, _, _ = load_checkpoint(directory)
    assert all(
        torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values(), strict=True)
    )


def test_atomic_write_respects_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "f.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "f.txt").stat().st_mode) == 0o644
