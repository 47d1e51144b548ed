"""Official MAE checkpoint loading on synthetic files with the official key names, at "test" size."""

from __future__ import annotations

import argparse
import functools
import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from fusebench.methods.base import WeightsError
from fusebench.methods.mae import build_mae
from fusebench.methods.mae import checkpoints as ck
from fusebench.methods.mae.checkpoints import DEFAULT_CFGS, MaeWeights, load_mae_weights, save_mae


def official_state(
    decoder_depth: int = 8, encoder_only: bool = False, tokens: int = 197
) -> dict[str, torch.Tensor]:
    """Official-layout MAE state dict, test size: cls token, 224-px pos tables, mask token, 8 dec. blocks."""
    src = build_mae("test", decoder_depth=decoder_depth)
    for p in src.parameters():
        torch.nn.init.normal_(p)
    state = dict(src.state_dict())
    state["cls_token"] = torch.randn(1, 1, src.embed_dim)
    state["pos_embed"] = torch.randn(1, tokens, src.embed_dim)
    if encoder_only:
        return {k: v for k, v in state.items() if k.startswith(("cls", "pos", "patch", "blocks", "norm"))}
    state["decoder_pos_embed"] = torch.randn(1, tokens, src.decoder_embed_dim)
    return state


def _save_official(path: Path, state: dict[str, torch.Tensor]) -> Path:
    torch.save({"model": state, "args": argparse.Namespace(model="mae_vit_large_patch16")}, path)
    return path


def test_official_full_checkpoint_loads_into_a_model_of_its_decoder_depth(tmp_path: Path) -> None:
    state = official_state()
    path = _save_official(tmp_path / "mae_visualize_vit_test.pth", state)
    model = load_mae_weights(build_mae("test", decoder_depth=8), path)
    own = model.state_dict()
    for key in (
        "patch_embed.proj.weight",
        "blocks.1.attn.qkv.weight",
        "norm.bias",
        "decoder_blocks.7.mlp.fc2.weight",
        "decoder_pred.weight",
        "mask_token",
    ):
        torch.testing.assert_close(own[key], state[key], msg=key)
    assert "cls_token" not in own


def test_a_decoder_of_another_depth_is_refused_not_truncated(tmp_path: Path) -> None:
    path = _save_official(tmp_path / "mae_visualize_vit_test.pth", official_state())
    model = build_mae("test")  # 2 decoder blocks
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(WeightsError, match=r"its decoder has 8 blocks, this maefuse model's decoder has 2") as info:
        load_mae_weights(model, path)
    assert "fusebench pretrain-mae --arch test --init" in str(info.value) and "--decoder-only" in str(info.value)
    for key, value in model.state_dict().items():  # nothing was loaded
        torch.testing.assert_close(value, before[key], msg=key)
    with pytest.raises(WeightsError, match="decoder has 8 blocks"):
        ck.mae_state_from_checkpoint(official_state(), build_mae("test"))


def test_mapping_drops_exactly_cls_and_pos() -> None:
    state = official_state(decoder_depth=2)
    kept = ck.mae_state_from_checkpoint(state, build_mae("test"))
    assert sorted(set(state) - set(kept)) == ["cls_token", "decoder_pos_embed", "pos_embed"]


def test_maefuse_style_file_without_mask_token_loads(tmp_path: Path) -> None:
    state = official_state(decoder_depth=2, tokens=1600)
    del state["mask_token"], state["cls_token"]
    model = build_mae("test")
    before = model.mask_token.clone()
    load_mae_weights(model, _save_official(tmp_path / "resume.pth", state))
    torch.testing.assert_close(model.mask_token, before)
    torch.testing.assert_close(model.decoder_norm.weight, state["decoder_norm.weight"])


def test_encoder_only_file_is_refused_unless_encoder_only(tmp_path: Path) -> None:
    path = _save_official(tmp_path / "mae_pretrain_vit_test.pth", official_state(encoder_only=True))
    with pytest.raises(WeightsError, match=r"holds an MAE encoder only \(no decoder\)") as info:
        load_mae_weights(build_mae("test"), path)
    message = str(info.value)
    assert f"--set backbone_weights={path} --set decoder_weights=" in message
    assert f"fusebench pretrain-mae --arch test --init {path} --decoder-only" in message
    model = build_mae("test")
    decoder_before = model.decoder_pred.weight.clone()
    load_mae_weights(model, path, encoder_only=True)
    torch.testing.assert_close(model.decoder_pred.weight, decoder_before)
    torch.testing.assert_close(
        model.blocks[0].attn.qkv.weight,
        torch.load(path, weights_only=False)["model"]["blocks.0.attn.qkv.weight"],
    )


def test_errors_list_missing_unexpected_and_mismatched_keys(tmp_path: Path) -> None:
    state = official_state(decoder_depth=2)
    del state["norm.weight"]
    state["head.weight"] = torch.zeros(3)
    state["decoder_pred.weight"] = torch.zeros(10, 32)
    path = _save_official(tmp_path / "bad.pth", state)
    with pytest.raises(WeightsError) as info:
        load_mae_weights(build_mae("test"), path)
    message = str(info.value)
    assert message.startswith(str(path))
    assert "missing keys ['norm.weight']" in message
    assert "unexpected keys ['head.weight']" in message
    assert "decoder_pred.weight: file (10, 32) vs model (768, 32)" in message


def test_wrong_size_model_names_the_shapes(tmp_path: Path) -> None:
    path = _save_official(tmp_path / "test.pth", official_state())
    with pytest.raises(
        WeightsError,
        match=r"patch_embed.proj.weight: file \(32, 3, 16, 16\) vs model "
        r"\(192, 3, 16, 16\)",
    ):
        load_mae_weights(build_mae("compact"), path)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_truncated_file_is_a_clear_error(tmp_path: Path, suffix: str) -> None:
    good = tmp_path / f"good{suffix}"
    if suffix == ".pth":
        _save_official(good, official_state())
    else:
        save_mae(build_mae("test"), good)
    bad = tmp_path / f"bad{suffix}"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(WeightsError, match=rf"{bad}: cannot read weights, the file is truncated"):
        load_mae_weights(build_mae("test"), bad)


def test_missing_file_and_unknown_name() -> None:
    with pytest.raises(WeightsError, match="not a known MAE weights name .*mae_visualize_vit_large_ganloss"):
        load_mae_weights(build_mae("test"), "no/such/file.pth")


def test_fp16_safetensors_round_trip(tmp_path: Path) -> None:
    model = build_mae("test")
    path = save_mae(model, tmp_path / "m.safetensors", half=True, meta={"step": 3})
    loaded = load_mae_weights(build_mae("test"), path)
    for (name, a), b in zip(model.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert b.dtype == torch.float32
        torch.testing.assert_close(b, a.half().float(), msg=name)


def test_weights_table_records_known_hashes_only() -> None:
    assert DEFAULT_CFGS["mae_pretrain_vit_large"].md5_prefix == "b8b06e"
    assert DEFAULT_CFGS["mae_pretrain_vit_base"].md5_prefix == "8cad7c"
    assert DEFAULT_CFGS["mae_pretrain_vit_huge"].md5_prefix == "9bdbb0"
    assert DEFAULT_CFGS["mae_visualize_vit_large_ganloss"].url == (
        "https://dl.fbaipublicfiles.com/mae/visualize/mae_visualize_vit_large_ganloss.pth"
    )
    official = [c for c in DEFAULT_CFGS.values() if c.url]
    assert len(official) == 10 and all(c.license == "CC-BY-NC-4.0" and c.sha256 is None for c in official)
    assert DEFAULT_CFGS["maefuse_resume_mae"].gdrive_id == "16YnXfUeqBbSprhWV1OygriAsr2y9cCcf"
    assert {c.name for c in official if not c.has_decoder} == {
        f"mae_pretrain_vit_{s}" for s in ("base", "large", "huge")
    }


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A 127.0.0.1 http.server over a folder the test fills."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()
    server.server_close()


@pytest.mark.network
def test_download_by_name_checks_md5_prefix(
    served: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, root = served
    state = official_state(decoder_depth=2)
    _save_official(root / "mae_test.pth", state)
    md5 = hashlib.md5((root / "mae_test.pth").read_bytes()).hexdigest()
    monkeypatch.setenv("FUSEBENCH_HOME", str(tmp_path / "home"))
    monkeypatch.setitem(
        DEFAULT_CFGS,
        "mae_test_ok",
        MaeWeights("mae_test_ok", "test", url=f"{url}/mae_test.pth", md5_prefix=md5[:6]),
    )
    model = load_mae_weights(build_mae("test"), "mae_test_ok", progress=False)
    torch.testing.assert_close(model.norm.weight, state["norm.weight"])
    assert (tmp_path / "home" / "weights" / "mae_test.pth").is_file()
    assert model.pretrained_cfg.name == "mae_test_ok"

    (root / "other.pth").write_bytes((root / "mae_test.pth").read_bytes())
    wrong = "0" * 6 if not md5.startswith("000000") else "1" * 6
    monkeypatch.setitem(
        DEFAULT_CFGS,
        "mae_test_bad",
        MaeWeights("mae_test_bad", "test", url=f"{url}/other.pth", md5_prefix=wrong),
    )
    with pytest.raises(WeightsError, match=f"does not start with the published {wrong}"):
        load_mae_weights(build_mae("test"), "mae_test_bad", progress=False)
    assert not (tmp_path / "home" / "weights" / "other.pth").exists()


@pytest.mark.network
def test_unreachable_server_is_a_download_error(
    served: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fusebench.download import DownloadError

    url, _ = served
    monkeypatch.setenv("FUSEBENCH_HOME", str(tmp_path / "home"))
    monkeypatch.setitem(
        DEFAULT_CFGS, "mae_test_404", MaeWeights("mae_test_404", "test", url=f"{url}/absent.pth")
    )
    with pytest.raises(DownloadError):
        load_mae_weights(build_mae("test"), "mae_test_404", progress=False)
