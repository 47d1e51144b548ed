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


def _write_module(root, name: str, registers: tuple[str, ...]) -> None:
    """A module that counts its imports and registers ``registers`` in LAZY_REGISTRY."""
    body = "".join(f"LAZY_REGISTRY.register({n!r})(lambda: {n!r})\n" for n in registers)
    (root / f"{name}.py").write_text(
        "from tests.test_registry import LAZY_REGISTRY, LAZY_IMPORTS\n"
        f"LAZY_IMPORTS.append({name!r})\n" + body
    )


LAZY_REGISTRY: Registry = Registry("widget")
LAZY_IMPORTS: list[str] = []


def test_builtin_modules_are_imported_in_order_until_the_name_is_found(monkeypatch: pytest.MonkeyPatch,
                                                                       tmp_path) -> None:
    _write_module(tmp_path, "fb_lazy_cheap", ("cheap", "Other"))
    _write_module(tmp_path, "fb_lazy_heavy", ("heavy",))
    monkeypatch.syspath_prepend(str(tmp_path))
    reg: Registry = Registry("widget", modules=("fb_lazy_cheap", "fb_lazy_heavy"))
    monkeypatch.setattr("tests.test_registry.LAZY_REGISTRY", reg)
    LAZY_IMPORTS.clear()
    assert reg.create("cheap") == "cheap"
    assert LAZY_IMPORTS == ["fb_lazy_cheap"]  # the heavy module is not imported for a name found before it
    assert "other" in reg and LAZY_IMPORTS == ["fb_lazy_cheap"]  # case-insensitive match, still no import
    assert reg.create("heavy") == "heavy" and LAZY_IMPORTS == ["fb_lazy_cheap", "fb_lazy_heavy"]
    with pytest.raises(UnknownNameError, match="Did you mean: heavy"):
        reg.get("heavyy")


def test_listing_imports_every_builtin_module(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    _write_module(tmp_path, "fb_lazy_one", ("one",))
    _write_module(tmp_path, "fb_lazy_two", ("two",))
    monkeypatch.syspath_prepend(str(tmp_path))
    reg: Registry = Registry("widget", modules=("fb_lazy_one", "fb_lazy_two"))
    monkeypatch.setattr("tests.test_registry.LAZY_REGISTRY", reg)
    assert reg.list() == ["one", "two"] and len(reg) == 2


def test_a_third_party_name_that_clashes_with_a_pending_builtin_fails_at_registration(
        monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    _write_module(tmp_path, "fb_lazy_builtin", ("taken",))
    monkeypatch.syspath_prepend(str(tmp_path))
    reg: Registry = Registry("widget", modules=("fb_lazy_builtin",))
    monkeypatch.setattr("tests.test_registry.LAZY_REGISTRY", reg)
    with pytest.raises(ValueError, match="'taken' is already registered"):
        reg.register("taken")(lambda: "mine")  # this test module is not fusebench's: built-ins load first
    assert reg.create("taken") == "taken"


def test_creating_a_pixel_method_does_not_import_the_networks() -> None:
    """`fusebench run --method mean` must not pay for timm and the published networks (~2 s of imports)."""
    import subprocess
    import sys

    code = ("import sys; from fusebench.methods import create_method, list_methods; create_method('mean'); "
            "print(sorted(m for m in ('timm', 'fusebench.methods.maefuse', 'fusebench.methods.zoo') "
            "if m in sys.modules)); print('maefuse' in list_methods(), 'timm' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split("\n")[:2] == ["[]", "True True"]
