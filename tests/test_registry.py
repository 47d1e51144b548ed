"""The generic registry: register, create with overrides, list with patterns, suggestions, plugins."""

from __future__ import annotations

from importlib import metadata

import pytest

from fusebench.registry import Registry, UnknownNameError


@pytest.fixture()
def registry() -> Registry:
    reg: Registry = Registry("widget")

    @reg.register("alpha-small", aliases=("alpha",), higher_is_better=True)
    def alpha_small(size: int = 1, colour: str = "red") -> tuple[int, str]:
        return size, colour

    @reg.register("beta")
    def beta() -> str:
        return "beta"

    return reg


def test_create_applies_overrides_and_drops_none(registry: Registry) -> None:
    assert registry.create("alpha-small") == (1, "red")
    assert registry.create("alpha-small", size=3, colour=None) == (3, "red")
    assert registry.create("alpha") == (1, "red")


def test_list_filters_with_fnmatch(registry: Registry) -> None:
    assert registry.list() == ["alpha-small", "beta"]
    assert registry.list("a*") == ["alpha-small"]
    assert registry.list("*", exclude=("b*",)) == ["alpha-small"]
    assert "alpha" in registry and "gamma" not in registry


def test_metadata_reads_as_attributes_and_is_read_only(registry: Registry) -> None:
    entry = registry.get("alpha-small")
    assert entry.higher_is_better is True
    with pytest.raises(TypeError):
        entry.meta["higher_is_better"] = False  # type: ignore[index]
    with pytest.raises(AttributeError, match="no attribute or metadata 'missing'"):
        _ = entry.missing


def test_unknown_name_suggests_close_matches(registry: Registry) -> None:
    with pytest.raises(UnknownNameError, match=r"Unknown widget 'alpah-small'\. Did you mean: alpha-small, alpha\?"):
        registry.get("alpah-small")
    with pytest.raises(UnknownNameError, match="Available: alpha-small, beta"):
        registry.get("zzz")


def test_duplicate_registration_raises(registry: Registry) -> None:
    with pytest.raises(ValueError, match="already registered"):
        registry.register("beta")(lambda: None)


def test_entry_point_plugins_are_loaded(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    plugin = tmp_path / "fb_plugin_mod.py"
    plugin.write_text(
        "from tests.test_registry import PLUGIN_REGISTRY\n"
        "@PLUGIN_REGISTRY.register('from-plugin')\n"
        "def make():\n    return 42\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    ep = metadata.EntryPoint(name="from-plugin", value="fb_plugin_mod", group="fusebench.widgets")
    monkeypatch.setattr(metadata, "entry_points", lambda group: [ep] if group == "fusebench.widgets" else [])
    assert PLUGIN_REGISTRY.create("from-plugin") == 42


def test_broken_plugin_warns_and_keeps_builtins(monkeypatch: pytest.MonkeyPatch) -> None:
    reg: Registry = Registry("gadget", entry_point_group="fusebench.gadgets")
    reg.register("builtin")(lambda: 1)
    ep = metadata.EntryPoint(name="bad", value="no_such_module_xyz", group="fusebench.gadgets")
    monkeypatch.setattr(metadata, "entry_points", lambda group: [ep])
    with pytest.warns(UserWarning, match="could not load gadget plugin 'bad'"):
        assert reg.list() == ["builtin"]


PLUGIN_REGISTRY: Registry = Registry("widget", entry_point_group="fusebench.widgets")
