"""Everything is checked before the first pair is fused, and a failed run leaves nothing that blocks the
corrected rerun: method names and options, metric and profile names, image sizes, `folder` name patterns."""

from __future__ import annotations

import json
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from fusebench.cli import main
from fusebench.methods import FusionMethod, create_method, register_method
from fusebench.methods.base import OptionError, method_options
from fusebench.runner import RunConfig, run


@pytest.fixture(autouse=True)
def _own_hash_cache(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("FUSEBENCH_HOME", str(tmp_path / "home"))


class Counting(FusionMethod):
    """Pixel mean that counts the pairs it fuses, and can fail on the first one."""

    calls: ClassVar[int] = 0
    fail: ClassVar[bool] = False

    def fuse(self, ir: torch.Tensor, vi: torch.Tensor) -> torch.Tensor:
        Counting.calls += 1
        if Counting.fail:
            raise RuntimeError("model exploded")
        return (ir + vi) / 2


register_method("test-counting", description="test only")(Counting)


def _invoke(tmp_path, data, *args: str):
    return CliRunner().invoke(main, ["run", "--dataset", str(data), "--out", str(tmp_path / "runs"),
                                     "--no-progress", *args])


def _nothing_written(tmp_path) -> bool:
    return not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("*"))


def test_bad_option_value_names_the_option_and_stores_nothing(tmp_path, folder_dataset) -> None:
    out = _invoke(tmp_path, folder_dataset, "--method", "laplacian", "--set", "levels=abc")
    assert out.exit_code != 0
    assert "option 'levels' expects an integer, got 'abc'" in out.output
    assert _nothing_written(tmp_path)
    out = _invoke(tmp_path, folder_dataset, "--method", "laplacian", "--set", "levels=2", "--metrics", "EN")
    assert out.exit_code == 0, out.output
    stored = json.loads((tmp_path / "runs" / "laplacian" / "data" / "run.json").read_text())
    assert stored["method_cfg"] == {"levels": 2}


def test_unknown_option_lists_the_valid_ones(tmp_path, folder_dataset) -> None:
    out = _invoke(tmp_path, folder_dataset, "--method", "laplacian", "--set", "lvels=3")
    assert out.exit_code != 0
    assert "method 'laplacian' has no option 'lvels'. Did you mean: levels? Options: levels (int, default 4)" \
        in out.output
    out = _invoke(tmp_path, folder_dataset, "--method", "mean", "--weights", "w.safetensors")
    assert out.exit_code != 0 and "has no option 'weights'" in out.output
    assert _nothing_written(tmp_path)
    with pytest.raises(OptionError, match="option 'eps1' expects a number"):
        create_method("gff", eps1="big")
    assert method_options("gff")["r1"].default == 45 and method_options("gff")["eps1"].kind == "float"


def test_options_are_listable() -> None:
    runner = CliRunner()
    out = runner.invoke(main, ["info", "Laplacian"])
    assert out.exit_code == 0 and "levels" in out.output and "int" in out.output
    out = runner.invoke(main, ["info", "folder"])
    assert out.exit_code == 0 and "pattern" in out.output and "(required)" in out.output
    out = runner.invoke(main, ["list", "methods", "--options", "gff"])
    assert out.exit_code == 0 and "r1:int=45" in out.output
    out = runner.invoke(main, ["info", "nosuch"])
    assert out.exit_code != 0 and "Unknown method 'nosuch'" in out.output


def test_metric_aliases_and_case_are_accepted(tmp_path, folder_dataset) -> None:
    out = _invoke(tmp_path, folder_dataset, "--method", "Mean", "--metrics", "EN,qabf,ssim", "--profile", "TANG")
    assert out.exit_code == 0, out.output
    frame = pd.read_csv(tmp_path / "runs" / "mean" / "data" / "metrics_tang.csv", index_col="id")
    assert list(frame.columns)[:3] == ["EN", "Qabf", "SSIM"]
    assert "mean on data" in out.output


def test_bad_names_fail_before_fusing(tmp_path, folder_dataset) -> None:
    Counting.calls, Counting.fail = 0, False
    cases = [
        (["--method", "test-counting", "--metrics", "EN,Qabff"], "Unknown metric 'Qabff'. Did you mean: Qabf"),
        (["--method", "test-counting", "--profile", "nosuch"], "Unknown metric profile 'nosuch'"),
        (["--method", "test-counting", "--metrics", "EN,en"], "EN given more than once"),
        (["--method", ""], "expected a method name"),
        (["--method", " , "], "expected a method name"),
        (["--method", "test-counting,nosuch"], "Unknown method 'nosuch'"),
        (["--method", "test-counting", "--metrics", ","], "expected at least one metric"),
    ]
    for args, message in cases:
        out = _invoke(tmp_path, folder_dataset, *args)
        assert out.exit_code != 0 and message in out.output, (args, out.output)
    assert Counting.calls == 0 and _nothing_written(tmp_path)


def test_too_small_images_fail_before_fusing_naming_the_files(tmp_path, folder_dataset) -> None:
    for kind in ("ir", "vi"):
        Image.fromarray(np.zeros((30, 30), np.uint8)).save(folder_dataset / kind / "p3.png")
    Counting.calls, Counting.fail = 0, False
    out = _invoke(tmp_path, folder_dataset, "--method", "test-counting", "--metrics", "EN,VIF,SSIM")
    assert out.exit_code != 0
    assert "1 of 4 pairs are too small for the metrics asked (VIF needs 41x41" in out.output
    assert "p3.png (30x30)" in out.output and "SSIM" not in out.output.split("(VIF")[1].split(";")[0]
    assert Counting.calls == 0 and _nothing_written(tmp_path)
    out = _invoke(tmp_path, folder_dataset, "--method", "test-counting", "--metrics", "EN,SSIM")
    assert out.exit_code == 0, out.output
    out = CliRunner().invoke(main, ["datasets", "verify", str(folder_dataset)])
    assert out.exit_code != 0 and "p3.png: size 30x30" in out.output and "VIF (needs 41x41)" in out.output
    out = CliRunner().invoke(main, ["datasets", "verify", str(folder_dataset), "--metrics", "EN"])
    assert out.exit_code == 0, out.output


def test_failure_on_the_first_pair_leaves_nothing(tmp_path, folder_dataset) -> None:
    Counting.calls, Counting.fail = 0, True
    out = _invoke(tmp_path, folder_dataset, "--method", "test-counting", "--metrics", "EN")
    assert out.exit_code != 0 and "model exploded" in out.output
    assert _nothing_written(tmp_path)
    Counting.fail = False
    out = _invoke(tmp_path, folder_dataset, "--method", "test-counting", "--metrics", "EN")
    assert out.exit_code == 0, out.output


def test_case_insensitive_dataset_names(shared_data) -> None:
    from fusebench.datasets import load_dataset

    assert load_dataset("TNO", root=shared_data).key == "tno"
    assert load_dataset("TNO.tang42", root=shared_data).key == "tno.tang42"


# -- folder: anyone's published results --------------------------------------------------------------------
def _publish(tmp_path, folder_dataset, name: str, ids=("p0", "p1", "p2", "p3")):
    direct = run(RunConfig(method="mean", dataset=str(folder_dataset), metrics=["EN", "SD"],
                           out=str(tmp_path / "direct")), progress=False)
    published = tmp_path / "published"
    published.mkdir(exist_ok=True)
    for i in ids:
        (published / name.format(id=i)).write_bytes((direct.run_dir / "fused" / f"{i}.png").read_bytes())
    return direct, published


def test_folder_name_pattern_prefix_and_suffix(tmp_path, folder_dataset) -> None:
    direct, published = _publish(tmp_path, folder_dataset, "{id}_fused.png")
    expected = pd.read_csv(direct.metrics_path, index_col="id")[["EN", "SD"]]
    for i, setting in enumerate(["pattern={id}_fused.png", "suffix=_fused", "pattern={id}_fused"]):
        out = _invoke(tmp_path, folder_dataset, "--method", "folder", "--set", f"path={published}", "--set",
                      setting, "--name", f"theirs{i}", "--metrics", "EN,SD")
        assert out.exit_code == 0, out.output
        got = pd.read_csv(tmp_path / "runs" / f"theirs{i}" / "data" / "metrics_fusebench.csv", index_col="id")
        pd.testing.assert_frame_equal(got[["EN", "SD"]], expected)


def test_folder_lists_every_missing_id_and_leaves_nothing(tmp_path, folder_dataset) -> None:
    _, published = _publish(tmp_path, folder_dataset, "{id}_fused.png", ids=("p1", "p3"))
    out = _invoke(tmp_path, folder_dataset, "--method", "folder", "--set", f"path={published}", "--metrics", "EN")
    assert out.exit_code != 0
    assert "no fused image for 4 of 4 pairs named '{id}' (any image extension): p0, p1, p2, p3" in out.output
    assert "--set pattern=" in out.output
    out = _invoke(tmp_path, folder_dataset, "--method", "folder", "--set", f"path={published}", "--set",
                  "pattern={id}_fused.png", "--metrics", "EN")
    assert out.exit_code != 0 and "no fused image for 2 of 4 pairs named '{id}_fused.png': p0, p2" in out.output
    out = _invoke(tmp_path, folder_dataset, "--method", "folder", "--set", f"path={published}", "--set",
                  "pattern=fused", "--metrics", "EN")
    assert out.exit_code != 0 and "option 'pattern' must hold '{id}'" in out.output
    out = _invoke(tmp_path, folder_dataset, "--method", "folder", "--metrics", "EN")
    assert out.exit_code != 0 and "method 'folder' needs option path" in out.output
    assert _nothing_written(tmp_path)


class ReadsFiles(FusionMethod):
    """A published network's shape: it reads the pair's files itself (``fuse_files``)."""

    seen: ClassVar[list[str]] = []

    def fuse(self, ir: torch.Tensor, vi: torch.Tensor) -> torch.Tensor:
        raise AssertionError("the runner must use fuse_files")

    def fuse_files(self, ir_path, vi_path):  # type: ignore[no-untyped-def]
        ReadsFiles.seen.append(str(ir_path))
        return np.asarray(Image.open(ir_path).convert("L"))


register_method("test-reads-files", description="test only")(ReadsFiles)


def test_methods_that_read_files_get_the_files(tmp_path, folder_dataset) -> None:
    ReadsFiles.seen = []
    result = run(RunConfig(method="test-reads-files", dataset=str(folder_dataset), metrics=["EN"],
                           out=str(tmp_path / "runs")), progress=False)
    assert sorted(ReadsFiles.seen) == sorted(str(folder_dataset / "ir" / f"p{i}.png") for i in range(4))
    fused = np.asarray(Image.open(result.run_dir / "fused" / "p0.png"))
    np.testing.assert_array_equal(fused, np.asarray(Image.open(folder_dataset / "ir" / "p0.png")))


def test_name_must_stay_inside_out(tmp_path, folder_dataset) -> None:
    from fusebench.runner import RunConfig, run

    for bad in ("../x", "a/b", ".."):
        with pytest.raises(ValueError, match="--name: expected a plain folder name inside --out"):
            run(RunConfig(method="mean", dataset=str(folder_dataset), name=bad, metrics=["EN"],
                          out=str(tmp_path / "runs")), progress=False)
    assert not (tmp_path / "x").exists() and not (tmp_path / "runs").exists()
