"""Built-in image modality and the hymenoptera (ants vs bees) data set."""

from __future__ import annotations

from pathlib import Path

from xmodal.data.readers import read_folder
from xmodal.data.spec import DatasetSpec
from xmodal.errors import BadInputError, ConfigError
from xmodal.hookspecs import hookimpl

#: hymenoptera is a set of JPEG photos; anything else in it is crawl debris.
PHOTO_SUFFIXES = (".jpg", ".jpeg")


@hookimpl
def register_modalities(register):
    from xmodal.adapters.image import ImageAdapter

    register("image", ImageAdapter)


@hookimpl
def register_datasets(register):
    register("hymenoptera", hymenoptera)


def hymenoptera(root: Path | None, keep_placeholders: bool = False) -> DatasetSpec:
    """Ants vs bees (the PyTorch transfer-learning tutorial's ImageNet subset).

    The given ``train`` split trains; ``val`` is both the validation and the test
    split, because it is the split every published result reports.

    The folder holds a GIF "image not found" placeholder
    (``train/ants/imageNotFound.gif``). Pillow reads it fine, but it is no photo of an
    ant, so by default it is *reported, not trained on*: it is listed as a bad input
    and the data set's default policy is ``skip``, which writes it to
    ``bad_files.csv`` and prints a one-line summary. ``--data.on_bad_file error``
    stops on it instead; ``--data.options '{keep_placeholders: true}'`` trains on it.
    Every other file goes through the image adapter, which reports unreadable files
    under the same policy.

    Args:
        root: the data root holding ``hymenoptera/{train,val}/{ants,bees}``.
        keep_placeholders: also train on files that are not JPEG photos.
    """
    if root is None:
        raise ConfigError("hymenoptera needs the data root: set XMODAL_DATA (or --data.root) "
                          "to a folder that holds hymenoptera/train and hymenoptera/val")
    base = Path(root) / "hymenoptera"
    if not (base / "train").is_dir() or not (base / "val").is_dir():
        raise ConfigError(f"hymenoptera not found: expected {base}/train and {base}/val "
                          "(class folders ants/ and bees/ inside each)")
    spec = read_folder(base, modality="image")
    bad: list[BadInputError] = []
    if not keep_placeholders:
        splits = {}
        for split in ("train", "val"):
            kept = []
            for item in getattr(spec, split) or []:
                suffix = Path(item.name).suffix.lower()
                if suffix in PHOTO_SUFFIXES:
                    kept.append(item)
                else:
                    bad.append(BadInputError(
                        item.name,
                        f"not a photo: a {suffix or 'suffix-less'} file among hymenoptera's JPEG "
                        "photos (the crawl's 'image not found' placeholder); left out "
                        "(--data.options '{keep_placeholders: true}' keeps it)",
                        "image",
                    ))
            splits[split] = kept
        spec.train, spec.val = splits["train"], splits["val"]
    spec.test = spec.val
    spec.bad = [*spec.bad, *bad]
    spec.on_bad_file = "skip"
    spec.description = "Hymenoptera: ants vs bees, 245 train / 153 val photos (ImageNet terms)"
    return spec
