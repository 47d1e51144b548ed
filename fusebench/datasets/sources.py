"""Where each benchmark is downloaded from, and how the upstream archive maps onto fusebench's layout.

The URLs are the public upstream sources named in ``shared/datasets/*/SOURCE.md``, pinned to the
commits given there, so the files are the ones the curated copies were checked against. GitHub builds
commit archives on the fly and does not promise byte-identical zips, so instead of an archive checksum
the *arranged files* are checked (``content_sha256``, see :func:`fusebench.datasets.fetch.content_digest`)
where the upstream files are byte copies of a complete release (RoadScene, VIFB). LLVIP and M3FD are only
on Google Drive / Baidu: ``manual`` says how to get them, and ``--archive`` arranges the download.

``layout`` maps a fusebench folder (``ir``, ``test/vi``) to the folder inside the archive, below any top
folder (GitHub names it ``<repo>-<commit>``); the names are matched case-insensitively.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Archive:
    """One upstream archive: its address (None when it must be fetched by hand) and its internal layout."""

    url: str | None
    filename: str  # name in the download cache, $FUSEBENCH_HOME/downloads/
    layout: Mapping[str, str]
    sha256: str | None = None  # of the archive itself, only where its bytes are stable
    rename: Mapping[str, str] = field(default_factory=dict)  # source stem -> id; if set, only these are taken
    grey: bool = False  # store 3-channel PNGs with R=G=B as one-channel PNG (lossless), as the curated copy


@dataclass(frozen=True)
class Source:
    """How to obtain one benchmark."""

    archives: tuple[Archive, ...]
    summary: str
    content_sha256: str | None = None
    manual: str | None = None  # instructions when the archives cannot be fetched automatically


def _github(repo: str, commit: str) -> str:
    return f"https://github.com/{repo}/archive/{commit}.zip"


_TNO_TANG = "0e87153be77320e31ef2cabb5820518d2ac56bac"
_TNO_DENSEFUSE = "5d9457df396f1ea6921e1b9b3703995205940862"
_ROADSCENE = "ab71420f8fc96396eeb97eecf3694909b3feb656"
_MSRS = "2052589d3a714d0285c8792e24d2db290d84b6ea"
_VIFB = "22b2ea9d91499cc5962d9bdcae9c290270f0fade"

# DenseFuse's IV_images pairs that are not in Tang's 42 (from tno/subsets/densefuse21.csv).
_DENSEFUSE_EXTRA = {"1": "43", "3": "44", "4": "45", "5": "46", "20": "47"}

SOURCES: dict[str, Source] = {
    "tno": Source(
        archives=(
            Archive(
                _github("Linfeng-Tang/Evaluation-for-Image-Fusion", _TNO_TANG),
                f"Evaluation-for-Image-Fusion-{_TNO_TANG}.zip",
                {"ir": "Image/Source-Image/TNO/ir", "vi": "Image/Source-Image/TNO/vi"},
                grey=True,
            ),
            Archive(
                _github("thfylsty/Classic-and-state-of-the-art-image-fusion-methods", _TNO_DENSEFUSE),
                f"Classic-and-state-of-the-art-image-fusion-methods-{_TNO_DENSEFUSE}.zip",
                {"ir": "IFCNN/datasets/IV_images/IR", "vi": "IFCNN/datasets/IV_images/VIS"},
                rename={
                    **{f"IR{k}": v for k, v in _DENSEFUSE_EXTRA.items()},
                    **{f"VIS{k}": v for k, v in _DENSEFUSE_EXTRA.items()},
                },
                grey=True,
            ),
        ),
        summary=(
            f"github.com/Linfeng-Tang/Evaluation-for-Image-Fusion@{_TNO_TANG[:7]} (ids 01-42) + "
            f"github.com/thfylsty/Classic-and-state-of-the-art-image-fusion-methods@{_TNO_DENSEFUSE[:7]} "
            "(ids 43-47); original release: figshare doi:10.6084/m9.figshare.1008029"
        ),
    ),
    "roadscene": Source(
        archives=(
            Archive(
                _github("hanna-xu/RoadScene", _ROADSCENE),
                f"RoadScene-{_ROADSCENE}.zip",
                {"ir": "cropinfrared", "vi": "crop_LR_visible"},
            ),
        ),
        summary=f"github.com/hanna-xu/RoadScene@{_ROADSCENE[:7]} (cropinfrared/, crop_LR_visible/)",
        content_sha256="716e33b23b9464d83f7d6b8d2c9dada252f7d06aaf25f1627ef5bf61790bd8b7",
    ),
    "msrs": Source(
        archives=(
            Archive(
                _github("Linfeng-Tang/MSRS", _MSRS),
                f"MSRS-{_MSRS}.zip",
                {"test/ir": "test/ir", "test/vi": "test/vi", "train/ir": "train/ir", "train/vi": "train/vi"},
            ),
        ),
        summary=f"github.com/Linfeng-Tang/MSRS@{_MSRS[:7]} (about 670 MB; segmentation labels are skipped)",
    ),
    "llvip": Source(
        archives=(
            Archive(
                None,
                "LLVIP.zip",
                {
                    "test/ir": "infrared/test",
                    "test/vi": "visible/test",
                    "train/ir": "infrared/train",
                    "train/vi": "visible/train",
                },
            ),
        ),
        summary="manual: LLVIP.zip from https://bupt-ai-cz.github.io/LLVIP/ (Google Drive / Baidu)",
        manual=(
            "LLVIP is distributed only through its authors' Google Drive and Baidu links, "
            "after accepting its licence (non-commercial use only).\n"
            "  1. Open https://bupt-ai-cz.github.io/LLVIP/ and download LLVIP.zip.\n"
            "  2. Run: fusebench datasets download llvip --archive /path/to/LLVIP.zip\n"
            "The archive holds LLVIP/infrared/{train,test}/<id>.jpg and LLVIP/visible/{train,test}/<id>.jpg; "
            "they are arranged as <data root>/llvip/{train,test}/{ir,vi}/<id>.jpg (you may also arrange them "
            "that way by hand). The IR is 3-channel grey and is loaded as one channel."
        ),
    ),
    "m3fd": Source(
        archives=(Archive(None, "M3FD_Fusion.zip", {"ir": "Ir", "vi": "Vis"}),),
        summary="manual: M3FD_Fusion.zip via github.com/JinyuanLiu-CV/TarDAL (Google Drive / Baidu)",
        manual=(
            "M3FD is distributed only through the TarDAL authors' Google Drive and Baidu links.\n"
            "  1. Open https://github.com/JinyuanLiu-CV/TarDAL, follow the M3FD dataset link and download "
            "M3FD_Fusion.zip (the 300-pair fusion set; M3FD_Detection.zip, 4,200 pairs, has the same "
            "layout).\n"
            "  2. Run: fusebench datasets download m3fd --archive /path/to/M3FD_Fusion.zip\n"
            "The archive holds Ir/<id>.png and Vis/<id>.png; they are arranged as "
            "<data root>/m3fd/ir/<id>.png "
            "and <data root>/m3fd/vi/<id>.png (you may also arrange them that way by hand)."
        ),
    ),
    "vifb": Source(
        archives=(
            Archive(
                _github("xingchenzhang/VIFB", _VIFB),
                f"VIFB-{_VIFB}.zip",
                {"ir": "input/IR", "vi": "input/VI"},
            ),
        ),
        summary=f"github.com/xingchenzhang/VIFB@{_VIFB[:7]} (input/IR, input/VI)",
        content_sha256="612cabb69293483108e585fdb0b5c42ca382222f402dc78d991368a96548b087",
    ),
}
