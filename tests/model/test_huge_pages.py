"""kiln.model.huge_pages: a model's weights moved into 2 MB pages keep their values, identities, ties and views, stay
trainable and savable, decode the same tokens, and really sit in huge pages (the kernel's own accounting)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from kiln.generate import SamplingParams, generate_batch
from kiln.model import cpu_fast, huge_pages
from kiln.model.checkpoint import load_checkpoint, save_checkpoint

needs_thp = pytest.mark.skipif(
    not huge_pages.available(), reason="this OS gives no transparent huge pages (Linux THP always/madvise)"
)


@pytest.fixture
def small_storages_move(monkeypatch):
    """The test models' storages are far below MIN_BYTES; let every one of them move."""
    monkeypatch.setattr(huge_pages, "MIN_BYTES", 1)


def anon_huge_kb(ptr: int) -> int:
    """AnonHugePages of the mapping holding address `ptr`, from /proc/self/smaps (what the kernel backs it with)."""
    inside = False
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split()
            if head and "-" in head[0] and not head[0].endswith(":"):
                start, end = (int(x, 16) for x in head[0].split("-"))
                inside = start <= ptr < end
            elif inside and head[0] == "AnonHugePages:":
                return int(head[1])
    raise AssertionError(f"no mapping holds {ptr:#x}")


@needs_thp
def test_moved_weights_keep_values_identity_ties_and_views(make_model, small_storages_move):
    model = make_model(dtype=torch.float32)
    base = torch.randn(2, 64, 48)
    model.extra_a, model.extra_b = nn.Parameter(base[0]), nn.Parameter(base[1])  # two views of one storage
    before = {k: v.clone() for k, v in model.state_dict().items()}
    params = dict(model.named_parameters())
    old_ptr = model.wte.weight.data_ptr()

    with torch.inference_mode():  # as decoding calls it
        moved = huge_pages.move_parameters(model)

    assert moved >= sum(p.numel() * p.element_size() for p in model.parameters())
    assert model.wte.weight.data_ptr() != old_ptr and huge_pages.is_huge(model.wte.weight.untyped_storage())
    assert dict(model.named_parameters()) == params  # the same Parameter objects (an optimizer keeps them)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
        assert not v.is_inference(), k
    assert model.lm_head.weight is model.wte.weight  # tied: still one parameter
    a, b = model.extra_a, model.extra_b
    assert a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr(), "views of one storage stay one storage"
    assert b.storage_offset() - a.storage_offset() == 64 * 48
    b.data[0, 0] = 7.0
    assert a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr() and torch.equal(a, before["extra_a"])
    assert huge_pages.move_parameters(model) == 0, "a second call moves nothing"


@needs_thp
def test_freed_mappings_are_forgotten():
    """When its last tensor goes, a mapping leaves the registry: memory the allocator later reuses at that address
    is not taken for 2 MB pages (and would then never be moved)."""
    import gc

    t = huge_pages.empty(3 << 20)
    region = next(r for r in huge_pages._regions if r[0] <= t.data_ptr() < r[1])
    del t
    gc.collect()
    assert region not in huge_pages._regions


@needs_thp
def test_large_weights_land_in_2mb_pages():
    """At the default threshold a 16 MB weight moves, and the kernel reports its mapping backed by huge pages (the
    point of the move); a small one stays."""
    model = nn.Sequential(nn.Linear(2048, 2048), nn.LayerNorm(2048))
    small = model[1].weight.data_ptr()
    assert huge_pages.move_parameters(model) == 2048 * 2048 * 4  # the weight; the bias (8 KB) stays
    assert huge_pages.is_huge(model[0].weight.untyped_storage())
    assert model[1].weight.data_ptr() == small, "storages below MIN_BYTES stay"
    assert anon_huge_kb(model[0].weight.data_ptr()) >= 2048, "the moved weight should be in 2 MB pages"


@needs_thp
def test_moved_model_trains_and_saves(make_model, rand_ids, tmp_path, small_storages_move):
    """Moved under inference mode (as the first decode does), the parameters are ordinary tensors: a training step
    updates them in place, and a checkpoint of them loads back equal."""
    model = make_model(dtype=torch.float32)
    with torch.inference_mode():
        huge_pages.move_parameters(model)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    x = rand_ids(2, 12)
    before = model.wte.weight.detach().clone()
    _, loss = model(x, x)
    loss.backward()
    opt.step()
    assert not torch.equal(model.wte.weight, before)
    assert huge_pages.is_huge(model.wte.weight.untyped_storage()), "the step updated the moved weights in place"
    save_checkpoint(tmp_path / "ck", model, None)
    loaded, _, _ = load_checkpoint(tmp_path / "ck")
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k


@needs_thp
def test_decoding_moves_the_weights_and_picks_the_same_tokens(make_model, rand_ids, monkeypatch, small_storages_move):
    """The first decode moves the weights (`cpu_fast.plan`); the tokens and log-probs equal those decoded from the
    same weights left in place (one linear path for both: the measured plan may time paths apart differently)."""
    monkeypatch.setattr(cpu_fast, "forced", "plain")
    model = make_model(dtype=torch.float32, init_std=0.5)
    kept = make_model(dtype=torch.float32, init_std=0.5)
    kept.load_state_dict(model.state_dict())
    prompts = [rand_ids(5, seed=1).tolist(), rand_ids(9, seed=2).tolist()]
    params = SamplingParams(temperature=0, max_new_tokens=12)
    monkeypatch.setattr(huge_pages, "enabled", False)
    expected = generate_batch(kept, prompts, params)
    assert not huge_pages.is_huge(kept.wte.weight.untyped_storage())
    monkeypatch.setattr(huge_pages, "enabled", True)
    got = generate_batch(model, prompts, params)
    assert huge_pages.is_huge(model.wte.weight.untyped_storage()), "decoding should have moved the weights"
    for g, e in zip(got, expected, strict=True):
        assert g.tokens == e.tokens
        assert g.logprobs == pytest.approx(e.logprobs, abs=1e-6)


def test_nothing_moves_where_disabled_or_unavailable(make_model, monkeypatch, small_storages_move):
    model = make_model(dtype=torch.float32)
    ptr = model.wte.weight.data_ptr()
    monkeypatch.setattr(huge_pages, "enabled", False)
    assert huge_pages.move_parameters(model) == 0
    monkeypatch.setattr(huge_pages, "enabled", True)
    monkeypatch.setattr(huge_pages, "_THP", huge_pages._THP.with_name("no-such-file"))
    assert not huge_pages.available()
    assert huge_pages.move_parameters(model) == 0
    assert model.wte.weight.data_ptr() == ptr
