"""`FusionMethod`: the one interface every fusion method implements, and the method registry.

A method fuses a batch of infrared and visible-luminance images, both (N, 1, H, W) float in [0, 1],
into a fused luminance image of the same size. Colour is handled here, once: the visible RGB image is
converted to YCbCr (BT.601), its Y is fused, its CbCr is put back. Methods that need a different
colour pipeline (the official MaeFuse inference) override :meth:`FusionMethod.fuse_images`.
"""

from __future__ import annotations

import ast
import difflib
import inspect
import json
import re
import textwrap
from abc import abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from fusebench.color import luminance, replace_luminance
from fusebench.files import atomic_write
from fusebench.registry import Registry

#: Built-in families, imported when a name is first looked up (one module per family; cheap ones first, so
#: that ``mean`` or ``folder`` do not import the timm-backed networks).
_FAMILIES = tuple(f"fusebench.methods.{m}" for m in
                  ("pixel", "folder", "daefuse", "classical", "maefuse_official", "maefuse", "zoo"))
METHODS: Registry[FusionMethod] = Registry("method", entry_point_group="fusebench.methods", modules=_FAMILIES)


def register_method(name: str, **meta: Any):
    """Register a method factory. Metadata: ``description``, ``trainable``, ``paper``, ``train`` (callable),
    ``options`` (optional: option name -> default, when the factory's signature does not tell; see
    :func:`method_options`)."""
    meta.setdefault("trainable", False)
    return METHODS.register(name, **meta)


def create_method(name: str, **overrides: Any) -> FusionMethod:
    """Build a registered method (any case of its name); ``None`` overrides are ignored.

    Options are checked against :func:`method_options` first: an unknown key lists the valid ones, a value
    of the wrong type (``levels="abc"``) names the option.
    """
    entry = METHODS.get(name)
    options = check_method_options(entry.name, overrides)
    try:
        method = entry.factory(**options)
    except TypeError as exc:
        if "argument" not in str(exc):  # only signature errors are the caller's options
            raise
        spec = method_options(entry.name)
        raise OptionError(f"method '{entry.name}': {exc}; options: {spec.describe()}") from exc
    method.name = entry.name
    return method


# -- options: declared by the factory's signature ------------------------------------------------------------
class OptionError(ValueError):
    """A method option that does not exist or has a value of the wrong type; the message names it."""


@dataclass(frozen=True)
class MethodOption:
    """One keyword a method accepts: its default (``REQUIRED`` when it has none) and kind."""

    name: str
    default: Any
    kind: str | None  # "int", "float", "bool", "str", "path", or None (any value)

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def describe(self) -> str:
        kind = self.kind or "any"
        return f"{self.name} ({kind}, required)" if self.required else f"{self.name} ({kind}, default {self.default!r})"


class _Required:
    def __repr__(self) -> str:
        return "required"


REQUIRED: Any = _Required()


@dataclass(frozen=True)
class MethodOptions:
    """The options of a method; ``open``: it also passes further keywords to an inner builder unchecked."""

    method: str
    options: tuple[MethodOption, ...]
    open: bool = False

    def __getitem__(self, name: str) -> MethodOption:
        return next(o for o in self.options if o.name == name)

    @property
    def names(self) -> list[str]:
        return [o.name for o in self.options]

    def describe(self) -> str:
        text = ", ".join(o.describe() for o in self.options) or "none"
        return text + (" (further keywords are passed on to the model unchecked)" if self.open else "")


def method_options(name: str) -> MethodOptions:
    """The options method ``name`` declares: its factory's keyword parameters, following a factory that
    passes ``**kwargs`` on to a class or builder (``LaplacianFusion(**kwargs)``) to that one's parameters.

    A ``options`` mapping in the registration metadata (name -> default) replaces the inspection; a ``model``
    class there (a factory that hands the keywords it does not take itself to a builder of that class) adds
    the class's keyword parameters, and the options are then open only if the class takes ``**kwargs``.
    """
    entry = METHODS.get(name)
    declared = entry.meta.get("options")
    if declared is not None:
        opts = tuple(MethodOption(k, v, _kind_of(v, None)) for k, v in dict(declared).items())
        return MethodOptions(entry.name, opts, open=False)
    found: dict[str, MethodOption] = {}
    is_open = _collect_options(entry.factory, found, skip=0, depth=0)
    model = entry.meta.get("model")
    if model is not None:
        is_open = _collect_options(model, found, skip=0, depth=0)
    return MethodOptions(entry.name, tuple(found.values()), open=is_open)


def check_method_options(name: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` checked against :func:`method_options`: unknown keys and bad values raise ``OptionError``
    naming the option (and listing the valid ones); text from the command line becomes the declared type.
    ``None`` values are dropped (unset options never beat defaults)."""
    spec = method_options(name)
    known = {o.name: o for o in spec.options}
    out: dict[str, Any] = {}
    unknown = [k for k in values if k not in known and values[k] is not None]
    if unknown and not spec.open:
        close = difflib.get_close_matches(unknown[0], list(known), n=3, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise OptionError(f"method '{spec.method}' has no option {', '.join(map(repr, unknown))}.{hint} "
                          f"Options: {spec.describe()}")
    for key, value in values.items():
        if value is None:
            continue
        option = known.get(key)
        out[key] = _coerce(spec.method, option, value) if option is not None else value
    missing = [o.name for o in spec.options if o.required and o.name not in out]
    if missing:
        raise OptionError(f"method '{spec.method}' needs option {', '.join(missing)} "
                          f"(--set {missing[0]}=...). Options: {spec.describe()}")
    return out


_TYPE_WORDS = {"int": "int", "float": "float", "bool": "bool", "str": "str", "Path": "path", "PathLike": "path"}


def _kind_of(default: Any, annotation: Any) -> str | None:
    if isinstance(default, bool):
        return "bool"
    words = set(re.findall(r"[A-Za-z_]+", annotation if isinstance(annotation, str) else
                           getattr(annotation, "__name__", "") if annotation is not inspect.Parameter.empty else ""))
    kinds = {_TYPE_WORDS[w] for w in words if w in _TYPE_WORDS}
    if isinstance(default, int):
        return "float" if "float" in kinds else "int"
    if isinstance(default, float):
        return "float"
    if isinstance(default, (str, Path)):
        return "path" if "path" in kinds else "str" if len(kinds - {"path"}) <= 1 else None
    if len(kinds) == 1:
        return kinds.pop()
    if kinds == {"str", "path"}:
        return "path"
    if kinds == {"int", "float"}:
        return "float"
    return None


def _coerce(method: str, option: MethodOption, value: Any) -> Any:
    kind, name = option.kind, option.name

    def bad(expected: str) -> OptionError:
        return OptionError(f"method '{method}': option '{name}' expects {expected}, got {value!r}")

    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.strip().lower() in ("true", "yes", "1")
        raise bad("true or false")
    if kind == "int":
        if isinstance(value, bool):
            raise bad("an integer")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise bad("an integer")
    if kind == "float":
        if isinstance(value, bool):
            raise bad("a number")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                pass
        raise bad("a number")
    if kind in ("str", "path"):
        if isinstance(value, (str, Path)):
            return value
        if isinstance(value, int) and not isinstance(value, bool):  # --set name=3 parses as JSON 3
            return str(value)
        raise bad("text" if kind == "str" else "a path")
    return value


def _collect_options(fn: Callable[..., Any], found: dict[str, MethodOption], skip: int, depth: int) -> bool:
    """Add ``fn``'s keyword parameters to ``found`` (after ``skip`` positional ones); True when it takes
    ``**kwargs`` that could not be followed to a callee."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return True
    var_kw = None
    for i, param in enumerate(sig.parameters.values()):
        if param.kind in (param.VAR_POSITIONAL,):
            continue
        if param.kind is param.VAR_KEYWORD:
            var_kw = param.name
            continue
        if param.kind is param.POSITIONAL_ONLY or (i < skip and param.kind is param.POSITIONAL_OR_KEYWORD):
            continue
        if param.name not in found:
            default = REQUIRED if param.default is param.empty else param.default
            found[param.name] = MethodOption(param.name, default, _kind_of(default, param.annotation))
    if var_kw is None:
        return False
    if depth >= 4:
        return True
    target = _forwarded_to(fn, var_kw)
    if target is None:
        return True
    callee, n_positional = target
    return _collect_options(callee, found, n_positional, depth + 1)


def _forwarded_to(fn: Callable[..., Any], var_kw: str) -> tuple[Callable[..., Any], int] | None:
    """The callable that ``fn`` passes its ``**var_kw`` to (by name, in its module), and how many
    positional arguments it passes first; None when there is no such single call."""
    code_owner = fn.__init__ if inspect.isclass(fn) else fn  # type: ignore[misc]
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(code_owner)))
    except (OSError, TypeError, SyntaxError):
        return None
    namespace = getattr(code_owner, "__globals__", {})
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
            continue
        forwards = any(
            kw.arg is None and (
                (isinstance(kw.value, ast.Name) and kw.value.id == var_kw)
                or (isinstance(kw.value, ast.Dict) and any(
                    k is None and isinstance(v, ast.Name) and v.id == var_kw
                    for k, v in zip(kw.value.keys, kw.value.values)))
            )
            for kw in node.keywords
        )
        callee = namespace.get(node.func.id)
        if forwards and callable(callee):
            if any(isinstance(a, ast.Starred) for a in node.args):
                return None
            return callee, len(node.args)
    return None


def list_methods(pattern: str = "*", exclude: tuple[str, ...] = ()) -> list[str]:
    """Registered method names matching an fnmatch pattern."""
    return METHODS.list(pattern, exclude)


class WeightsError(ValueError):
    """A checkpoint or weights file that does not fit the method; the message names the file."""


class FusionMethod(nn.Module):
    """Base class of all fusion methods (an ``nn.Module`` so weights, devices and dtypes work as usual)."""

    #: whether the method has parameters that must be trained before it is useful
    trainable: ClassVar[bool] = False
    #: device types the method can run on
    devices: ClassVar[tuple[str, ...]] = ("cpu", "cuda")

    def __init__(self, **cfg: Any) -> None:
        super().__init__()
        self.name = type(self).__name__.lower()
        self.cfg: dict[str, Any] = dict(cfg)

    @abstractmethod
    def fuse(self, ir: Tensor, vi: Tensor) -> Tensor:
        """Fuse (N, 1, H, W) infrared and visible luminance in [0, 1] into (N, 1, H, W) in [0, 1]."""

    def fuse_batch(self, ir: Tensor, vi: Tensor, ids: Sequence[str] | None = None) -> Tensor:
        """:meth:`fuse` with its contract checked; methods that need the pair ids (``folder``) override this."""
        out = self.fuse(ir, vi)
        return self.check_output(out, ir, ids)

    def fuse_images(self, ir: Tensor, vi: Tensor, ids: Sequence[str] | None = None) -> Tensor:
        """Fuse infrared (N, 1, H, W) with a grey or RGB visible image (N, 1|3, H, W); output has vi's channels."""
        check_pair_tensors(ir, vi)
        fused_y = self.fuse_batch(ir, luminance(vi), ids)
        return replace_luminance(vi, fused_y)

    def forward(self, ir: Tensor, vi: Tensor) -> Tensor:
        return self.fuse(ir, vi)

    def check_output(self, out: Tensor, ir: Tensor, ids: Sequence[str] | None = None) -> Tensor:
        """Same size as the input, finite, clamped to [0, 1]; a clear error otherwise."""
        where = f" for pairs {list(ids)}" if ids else ""
        if out.shape != ir.shape:
            raise RuntimeError(
                f"method '{self.name}' returned shape {tuple(out.shape)}{where}, expected {tuple(ir.shape)}"
            )
        if not torch.isfinite(out).all():
            raise RuntimeError(f"method '{self.name}' produced NaN or inf values{where}")
        return out.clamp(0.0, 1.0)

    # -- weights -------------------------------------------------------------------------------------------
    def save_weights(self, path: str | Path) -> None:
        """Save the state dict as safetensors with the method's name and config in the metadata."""
        from safetensors.torch import save

        tensors = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        meta = {"method": self.name, "cfg": json.dumps(self.cfg, default=str)}
        with atomic_write(path, "wb") as handle:
            handle.write(save(tensors, metadata=meta))

    def load_weights(self, path: str | Path, strict: bool = True) -> None:
        """Load safetensors (or a torch checkpoint holding a state dict); mismatches list the keys."""
        path = Path(path)
        state = read_state_dict(path)
        self.check_state_fits(state, path, strict=strict)
        self.load_state_dict(state, strict=strict)

    def check_state_fits(
        self, state: dict[str, Tensor], path: Path, *, required: set[str] | None = None, strict: bool = True
    ) -> None:
        """Raise a WeightsError naming the file and the missing, unexpected and mis-shaped keys.

        ``required`` (default: every key of the model) is what the file must hold, for methods whose
        files carry only some of their parameters.
        """
        own = self.state_dict()
        missing = sorted((set(own) if required is None else required) - set(state))
        unexpected = sorted(set(state) - set(own))
        wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
        if not wrong and not (strict and (missing or unexpected)):
            return
        parts = []
        if missing:
            parts.append(f"missing keys {missing[:8]}{' ...' if len(missing) > 8 else ''}")
        if unexpected:
            parts.append(f"unexpected keys {unexpected[:8]}{' ...' if len(unexpected) > 8 else ''}")
        if wrong:
            k = wrong[0]
            parts.append(f"shape mismatch for {len(wrong)} keys, e.g. {k}: file {tuple(state[k].shape)} vs "
                         f"model {tuple(own[k].shape)}")
        raise WeightsError(f"{path}: weights do not fit method '{self.name}': " + "; ".join(parts))


def read_state_dict(path: Path) -> dict[str, Tensor]:
    """Read a safetensors file or a torch checkpoint (``state_dict``/``model`` key or a bare dict)."""
    if not path.is_file():
        raise WeightsError(f"{path}: weights file not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(f"{path}: cannot read weights, the file is truncated or not a checkpoint ({exc})") from exc
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise WeightsError(f"{path}: not a state dict of tensors")
    return obj


def check_pair_tensors(ir: Tensor, vi: Tensor) -> None:
    """Validate a batch of pairs: (N, 1, H, W) infrared, (N, 1|3, H, W) visible, finite, in [0, 1]."""
    if not isinstance(ir, Tensor) or not isinstance(vi, Tensor):
        raise TypeError(f"Expected `ir` and `vi` to be torch tensors. Got {type(ir).__name__} and {type(vi).__name__}.")
    if ir.ndim != 4 or ir.shape[1] != 1:
        raise ValueError(f"Expected `ir` of shape (N, 1, H, W). Got {tuple(ir.shape)}.")
    if vi.ndim != 4 or vi.shape[1] not in (1, 3):
        raise ValueError(f"Expected `vi` of shape (N, 1 or 3, H, W). Got {tuple(vi.shape)}.")
    if ir.shape[0] != vi.shape[0] or ir.shape[-2:] != vi.shape[-2:]:
        raise ValueError(
            f"Expected `ir` and `vi` to have the same batch size, height and width. "
            f"Got ir: {tuple(ir.shape)} and vi: {tuple(vi.shape)}."
        )
    for name, x in (("ir", ir), ("vi", vi)):
        if not torch.isfinite(x).all():
            raise ValueError(f"`{name}` contains NaN or inf values.")
        if x.numel() and (x.min() < 0 or x.max() > 1):
            raise ValueError(f"Expected `{name}` in [0, 1]. Got values in [{x.min().item():.4g}, {x.max().item():.4g}].")
