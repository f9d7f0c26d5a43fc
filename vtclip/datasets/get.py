"""``vtclip data get NAME``: fetch a dataset with torchvision's own downloaders, plus CoOp's split file.

torchvision downloads 8 of the 11 protocol datasets into a layout ``vtclip data check`` reads (the
torchvision layouts of ``real.LAYOUTS``). CoOp's split file ``split_zhou_<Name>.json`` sits on Google
Drive; torchvision's Google Drive downloader (which needs ``gdown``) fetches it into the dataset's
folder. When it cannot, the command says which file goes where; without it vtclip makes the split
by CoOp's rule from the dataset's own files. ImageNet, Stanford Cars and UCF101 are fetched by hand.

Taught in: the book's page "Run it on real data" and the appendix "Getting the datasets".
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path

from .base import get_dataset
from .classnames import classnames
from .real import Layout, data_root, how_to_get, locate
from .splits import read_split_file

#: name -> (torchvision.datasets class, its root relative to the data root). The comment is where the
#: images land, one of the folders ``real.LAYOUTS`` looks in.
TORCHVISION: dict[str, tuple[str, str]] = {
    "caltech101": ("Caltech101", ""),           # <root>/caltech101/101_ObjectCategories
    "dtd": ("DTD", ""),                         # <root>/dtd/dtd/images
    "eurosat": ("EuroSAT", ""),                 # <root>/eurosat/2750
    "fgvc_aircraft": ("FGVCAircraft", ""),      # <root>/fgvc-aircraft-2013b/data/images
    "food101": ("Food101", ""),                 # <root>/food-101/images
    "oxford_flowers": ("Flowers102", ""),       # <root>/flowers-102/jpg
    "oxford_pets": ("OxfordIIITPet", ""),       # <root>/oxford-iiit-pet/images
    "sun397": ("SUN397", "sun397"),             # <root>/sun397/SUN397
}

#: Why torchvision cannot fetch the other three.
BY_HAND: dict[str, str] = {
    "imagenet": "ImageNet needs an account at image-net.org; torchvision only unpacks the archives",
    "stanford_cars": "the dataset's download URL is dead; torchvision's StanfordCars cannot fetch it",
    "ucf101": "torchvision's UCF101 has no downloader, and CoOp uses its own middle-frame images",
}


def _layout(name: str) -> Layout:
    """The ``Layout`` of a registered real dataset; a clear error for anything else."""
    spec = get_dataset(name)
    layout = spec.extra.get("layout")
    if not isinstance(layout, Layout):
        raise ValueError(f"{spec.name!r} is not a downloadable dataset ({spec.kind}); `vtclip data get` "
                         f"fetches one of: {', '.join(sorted({**TORCHVISION, **BY_HAND}))}")
    return layout


def download_images(layout: Layout, root: str | Path | None = None) -> Path:
    """Download the dataset with ``torchvision.datasets.<Class>(..., download=True)``; its folder."""
    import torchvision.datasets as tvd

    if layout.name not in TORCHVISION:
        raise RuntimeError(f"vtclip data get cannot fetch {layout.name}: {BY_HAND[layout.name]}.\n"
                           + how_to_get(layout, root))
    cls, sub = TORCHVISION[layout.name]
    target = data_root(root) / sub
    target.mkdir(parents=True, exist_ok=True)
    print(f"{layout.name}: downloading with torchvision.datasets.{cls}('{target}', download=True)")
    try:
        getattr(tvd, cls)(str(target), download=True)
    except (OSError, RuntimeError) as err:     # no network, a refused connection, a bad checksum
        raise RuntimeError(f"downloading {layout.title} failed ({type(err).__name__}: {err}). "
                           f"Run the command again, or fetch it by hand:\n{how_to_get(layout, root)}"
                           ) from err
    loc = locate(layout, root)
    if loc is None:
        raise RuntimeError(f"torchvision put {layout.title} under {target}, but not in a layout vtclip "
                           f"reads (another torchvision version?).\n{how_to_get(layout, root)}")
    return loc.folder


def _drive_id(url: str) -> str:
    """The file id of a Google Drive link ``https://drive.google.com/file/d/<id>/view``."""
    return re.search(r"/d/([\w-]+)", url).group(1)


def download_split_file(layout: Layout, folder: Path) -> str:
    """Fetch CoOp's split file into ``folder`` if it is not there; a line saying what happened."""
    from torchvision.datasets import utils as tv_utils

    path = folder / layout.split_file
    if path.is_file():
        return f"  split file: {path} (already there)"
    if not layout.split_url:
        return f"  split file: none needed ({layout.rule})"
    try:
        tv_utils.download_file_from_google_drive(_drive_id(layout.split_url), str(folder),
                                                 layout.split_file)
        read_split_file(path, classnames(layout.name))     # a Drive error page is not a split file
        return f"  split file: {path} (CoOp's, from Google Drive)"
    except Exception as err:  # noqa: BLE001 -- gdown raises many types; each ends in the same advice
        path.unlink(missing_ok=True)
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        return (f"  split file: NOT fetched ({reason}).\n"
                f"  Download CoOp's {layout.split_file} from {layout.split_url} and put it at {path}.\n"
                f"  Until then vtclip makes the split itself by CoOp's rule: {layout.rule}.")


def cmd_get(args) -> int:
    """Fetch the images (unless present) and the split file, then check the result as `data check`."""
    from .cli import cmd_check

    layout = _layout(args.name)
    loc = locate(layout, args.data_root)
    if loc is not None:
        print(f"{layout.name}: already in {loc.folder}; not downloaded again")
        folder = loc.folder
    else:
        folder = download_images(layout, args.data_root)
    print(download_split_file(layout, folder))
    return cmd_check(argparse.Namespace(name=layout.name, data_root=args.data_root, images=False,
                                        json=args.json))


def add_command(sub) -> None:
    """Add ``vtclip data get NAME`` to the ``vtclip data`` sub-parsers."""
    q = sub.add_parser("get", help="download a dataset with torchvision, plus CoOp's split file")
    q.add_argument("name", help=f"one of {', '.join(sorted(TORCHVISION))} (the rest: see the message)")
    q.add_argument("--data-root", default=None, help="where datasets live (default $VTCLIP_HOME/data)")
    q.add_argument("--json", action="store_true", help="print data check's JSON object as the last line")
    q.set_defaults(func=cmd_get)
