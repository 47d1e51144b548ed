"""DAE-Fuse (arXiv:2409.10080), re-implemented from the paper; importing this package registers it."""

from fusebench.methods.daefuse.model import DAEFuse, default_cfgs

__all__ = ["DAEFuse", "default_cfgs"]
