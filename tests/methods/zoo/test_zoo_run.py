"""`fusebench run` with a published network: offline from the weights cache, exact, or a fast clear failure."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from fusebench.cli import main
from fusebench.methods import METHODS
from tests.methods.zoo.conftest import assert_matches_official, read_official


@pytest.fixture()
def offline_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FUSEBENCH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FUSEBENCH_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    return tmp_path / "home"


def test_run_offline_from_the_cache_writes_the_official_output(offline_home: Path, zoo: Path, shared_data: Path,
                                                               tmp_path: Path) -> None:
    cache = offline_home / "weights" / "densefuse"
    cache.mkdir(parents=True)
    shutil.copy(zoo / "densefuse" / "weights" / "densefuse_gray.model", cache)  # where the downloader puts it
    sub = tmp_path / "tno_pair"
    for kind in ("ir", "vi"):
        (sub / kind).mkdir(parents=True)
        shutil.copy(shared_data / "tno" / kind / "01.png", sub / kind / "01.png")
    result = CliRunner().invoke(main, ["run", "--method", "densefuse", "--dataset", str(sub), "--metrics", "EN",
                                       "--no-progress", "--out", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output
    fused = np.array(Image.open(tmp_path / "runs" / "densefuse" / "tno_pair" / "fused" / "01.png"))
    assert_matches_official(fused, read_official(zoo / "densefuse" / "official" / "tno_01.png"), share=1.0,
                            max_diff=0)


@pytest.mark.parametrize("name", sorted(m for m in METHODS.list() if "pretrained" in METHODS.get(m).meta))
def test_run_without_cached_weights_fails_fast_with_url_and_path(name: str, offline_home: Path,
                                                                  shared_data: Path) -> None:
    start = time.perf_counter()
    result = CliRunner().invoke(main, ["run", "--method", name, "--dataset", "tno", "--data-root",
                                       str(shared_data), "--no-progress"])
    assert time.perf_counter() - start < 5
    assert result.exit_code != 0
    spec = METHODS.get(name).meta["pretrained"].files[0]
    assert spec.url in result.output and str(offline_home / "weights" / name / spec.file) in result.output
    assert not Path("runs").exists() or not any(Path("runs").rglob("*.png"))  # nothing fused


@pytest.mark.parametrize("name", sorted(n for n in METHODS.list() if "pretrained" in METHODS.get(n).meta))
def test_options_are_the_builder_and_the_network_class_parameters(name: str) -> None:
    """`fusebench info` lists every option of a published network, and a misspelt --set fails before any
    weights are looked for (it used to be passed on unchecked, and some classes stored it silently)."""
    import inspect

    from fusebench.methods.base import OptionError, check_method_options, method_options

    spec = method_options(name)
    own = [p for p in inspect.signature(METHODS.get(name).meta["model"]).parameters if p != "self"]
    assert not spec.open and sorted(spec.names) == sorted({"weights", "random_init", *own})
    with pytest.raises(OptionError, match=f"method '{name}' has no option 'tile'"):
        check_method_options(name, {"tile": 3})
