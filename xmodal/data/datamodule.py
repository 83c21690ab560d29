"""XModalDataModule: any registered data set, folder or manifest, for any modality."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from xmodal import plugins
from xmodal.adapters.base import ModalityAdapter, create_adapter
from xmodal.adapters.text_glyphs import PAD
from xmodal.data.paths import cache_root, data_root
from xmodal.data.readers import read_folder, read_manifest
from xmodal.data.resume import LengthGroupedSampler, ResumableLoader, ResumableSampler
from xmodal.data.scan import BadFiles, apply_policy, scan
from xmodal.data.spec import DatasetSpec, Item, per_class_subset, split_off
from xmodal.errors import ConfigError, XModalError


def default_num_workers() -> int:
    """Workers that decode: all cores but one, at most 8 (0 on a single core)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(0, min(8, cores - 1)) if cores > 1 else 0


class ArrayDataset(Dataset):
    """Samples already decoded (the memory-mapped decode cache)."""

    def __init__(self, array: np.ndarray, items: list[Item]) -> None:
        self.array, self.items = array, items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.items[index]
        label = -1 if item.label is None else item.label
        return {"input": torch.from_numpy(np.array(self.array[index])), "label": label, "name": item.name}


class DecodeDataset(Dataset):
    """Samples decoded on access in DataLoader workers (variable-size inputs, augmentation)."""

    def __init__(self, items: list[Item], adapter: ModalityAdapter, train: bool) -> None:
        self.items, self.adapter, self.train = items, adapter, train

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.items[index]
        value = self.adapter.decode_train(item.source) if self.train else self.adapter.decode(item.source)
        label = -1 if item.label is None else item.label
        return {"input": value, "label": label, "name": item.name}


class XModalDataModule(pl.LightningDataModule):
    """Data for every modality: a named data set, a folder or a CSV manifest.

    Args:
        dataset: a registered data set (``fsdd``, ``sms_spam``, ``hymenoptera``, ...),
            ``folder`` (class-per-folder under ``root``) or ``csv`` (``manifest``).
            Default: the modality's default data set.
        modality: the adapter to use (default: the data set's own).
        adapter: adapter settings, e.g. ``{n_mels: 128}``; unknown keys are an error.
        root: data root. Default ``$XMODAL_DATA``; for ``folder`` the folder itself.
        manifest: CSV with ``path,label[,split]`` columns (implies ``dataset: csv``).
        options: extra keyword options for the data set factory.
        predict_root: folder (or file) of inputs for ``xmodal predict``.
        val_fraction: share of train held out for validation when the data set has
            no validation split. ``0``: no validation, train on all of train for every
            epoch and keep the last weights (the final fit once settings are chosen,
            as a scikit-learn baseline refits on all of its training data).
        per_class: use at most this many training items per class.
        batch_size: samples per batch.
        num_workers: decoding workers (default: cores - 1, at most 8).
        on_bad_file: ``error`` (stop, naming the file), ``skip`` (drop it and list it
            in ``bad_files.csv``) or ``warn`` (skip with a warning each). Default: the
            data set's own policy (``DatasetSpec.on_bad_file``), else ``error``.
        cache: keep decoded inputs in a memory-mapped cache on disk.
        cache_dir: where (default ``$XMODAL_CACHE/decoded`` or ``~/.cache/xmodal/decoded``).
        cache_max_gb: size limit of the decode cache folder; the least recently used
            entries are evicted when a new one would exceed it (``None``: no limit).
        seed: seed of the validation split and the ``per_class`` subset.
        group_by_length: for sequence input (text ``layout: glyphs``), train on batches of
            similar length (:class:`~xmodal.data.resume.LengthGroupedSampler`): faster,
            as a batch is cut at its longest text, but off by default (as in Hugging
            Face's ``group_by_length``) because length often goes with the label
            (spam is longer than ham) and like-length batches then lean to one class.
    """

    def __init__(
        self,
        dataset: str | None = None,
        modality: str | None = None,
        adapter: dict[str, Any] | None = None,
        root: str | None = None,
        manifest: str | None = None,
        options: dict[str, Any] | None = None,
        predict_root: str | None = None,
        val_fraction: float = 0.1,
        per_class: int | None = None,
        batch_size: int = 32,
        num_workers: int | None = None,
        on_bad_file: str | None = None,
        cache: bool = True,
        cache_dir: str | None = None,
        cache_max_gb: float | None = 50.0,
        seed: int = 0,
        group_by_length: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if on_bad_file not in (None, "error", "skip", "warn"):
            raise ConfigError(f"on_bad_file must be error, skip or warn, not {on_bad_file!r}")
        if not 0.0 <= val_fraction < 1.0:
            raise ConfigError(f"val_fraction must be at least 0 and below 1, not {val_fraction!r}")
        self.bad_files = BadFiles()
        self.spec: DatasetSpec | None = None
        self.adapter: ModalityAdapter | None = None
        self.datasets: dict[str, Dataset] = {}
        self.num_workers = default_num_workers() if num_workers is None else num_workers
        if dataset is None and manifest is None and modality is None and predict_root is None:
            raise ConfigError("say what to train on: --modality NAME, --data.dataset NAME, "
                              "--data.manifest FILE.csv or --data.dataset folder --data.root DIR")
        if modality is not None and modality not in plugins.modalities().names():
            raise ConfigError(f"unknown modality {modality!r}; installed: "
                              + ", ".join(plugins.modalities().names()))
        if adapter:  # fail on a misspelt setting now, not after minutes of scanning
            create_adapter({"modality": self._modality_name(), **adapter})

    # -- resolution -------------------------------------------------------------------

    def _dataset_name(self) -> str:
        hp = self.hparams
        if hp.manifest:
            return "csv"
        if hp.dataset:
            return hp.dataset
        if hp.modality:
            default = plugins.modalities().get(hp.modality).default_dataset
            if default:
                return default
        raise ConfigError(f"modality {hp.modality!r} has no default data set: pass --data.dataset")

    def _modality_name(self) -> str:
        if self.hparams.modality:
            return self.hparams.modality
        if self.spec is not None and self.spec.modality:
            return self.spec.modality
        name = self._dataset_name()
        probe = self._load_spec(name)
        return probe.modality

    def _load_spec(self, name: str) -> DatasetSpec:
        hp = self.hparams
        options = dict(hp.options or {})
        if name == "csv":
            return read_manifest(hp.manifest, root=hp.root, modality=hp.modality or "", **options)
        if name == "folder":
            if not hp.root:
                raise ConfigError("dataset 'folder' needs --data.root DIR")
            return read_folder(hp.root, modality=hp.modality or "")
        try:
            factory = plugins.datasets().get(name)
        except KeyError as exc:
            raise ConfigError(str(exc.args[0]) + ", folder, csv") from None
        return factory(data_root(hp.root), **options)

    def prepare_spec(self) -> DatasetSpec:
        """List the data set (no decoding) and build the adapter."""
        if self.spec is None:
            self.spec = self._load_spec(self._dataset_name())
            if not self.spec.modality:
                self.spec.modality = self.hparams.modality or ""
        if self.adapter is None:
            settings = {**self.spec.adapter_defaults, **(self.hparams.adapter or {})}
            modality = self.hparams.modality or self.spec.modality
            model = self._model()
            if model is not None and model.hparams.get("input_adapter"):
                settings = dict(model.hparams.input_adapter)  # a checkpoint's own settings win
                modality = settings.pop("modality")
            self.adapter = create_adapter({"modality": modality, **settings})
        return self.spec

    def _model(self) -> Any:
        trainer = getattr(self, "trainer", None)
        return getattr(trainer, "lightning_module", None) if trainer is not None else None

    @property
    def bad_file_policy(self) -> str:
        """``--data.on_bad_file`` if given, else the data set's own default."""
        return self.hparams.on_bad_file or self.prepare_spec().on_bad_file

    @property
    def class_names(self) -> list[str]:
        return list(self.prepare_spec().classes)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    # -- splits -----------------------------------------------------------------------

    def split_items(self, split: str) -> list[Item]:
        spec = self.prepare_spec()
        hp = self.hparams
        if split in ("train", "val"):
            train, val = spec.train, spec.val
            if val is None:
                train, val = split_off(spec.train, hp.val_fraction, hp.seed)
            if split == "val":
                return val
            return per_class_subset(train, hp.per_class, hp.seed) if hp.per_class else train
        if split == "test":
            if spec.test is None:
                raise ConfigError(f"data set {self._dataset_name()!r} has no test split")
            return spec.test
        if split == "predict":
            if hp.predict_root:
                return _predict_items(Path(hp.predict_root))
            return spec.test or spec.val or []
        raise ValueError(split)

    def has_validation(self) -> bool:
        """False when there is nothing to validate on (``val_fraction: 0`` and no
        ``val`` split of the data set's own): the model then trains every epoch and
        keeps its last weights."""
        return bool(self.split_items("val"))

    def setup(self, stage: str | None = None) -> None:
        spec = self.prepare_spec()
        if not getattr(self, "_listing_checked", False):  # fit then test: report rows once
            for error in spec.bad:
                apply_policy(error, self.bad_file_policy, self.bad_files)
            self._listing_checked = True
        wanted = {"fit": ["train", "val"], "validate": ["val"], "test": ["test"],
                  "predict": ["predict"], None: ["train", "val", "test"]}[stage]
        for split in wanted:
            if split not in self.datasets:
                self.datasets[split] = self._build(split)
        self.report_bad_files()

    def _build(self, split: str) -> Dataset:
        items = self.split_items(split)
        hp = self.hparams
        cache_dir = None
        if hp.cache:
            cache_dir = Path(hp.cache_dir) if hp.cache_dir else cache_root() / "decoded"
        train_varies = split == "train" and self.adapter.decode_varies_in_training
        result = scan(items, self.adapter, self.bad_file_policy, self.bad_files, self.num_workers,
                      cache_dir=cache_dir, keep=not train_varies,
                      cache_max_gb=hp.get("cache_max_gb"))
        if not result.items and (items or split == "train"):  # never "train" on nothing
            listed = self.report_bad_files()
            where = f"; see {listed}" if listed else ""
            raise XModalError(f"no usable {split} input: {len(items)} listed, all unreadable{where}"
                              if items else f"the {split} split is empty")
        note = self.adapter.input_report([item.source for item in result.items])
        if note:
            print(f"xmodal: {split}: {note}", file=sys.stderr)
        if result.array is not None:
            return ArrayDataset(result.array, result.items)
        return DecodeDataset(result.items, self.adapter, train=split == "train")

    def report_bad_files(self) -> Path | None:
        """Write ``bad_files.csv`` beside the logs; say so once per new finding.

        ``setup`` runs again for the test after fit: the file is rewritten there, but
        the summary line is printed only when the list has grown since the last one.
        """
        if not self.bad_files.rows:
            return None
        trainer = getattr(self, "trainer", None)
        folder = Path(trainer.log_dir) if trainer is not None and trainer.log_dir else Path.cwd()
        path = self.bad_files.write(folder / "bad_files.csv")
        if len(self.bad_files.rows) > getattr(self, "_bad_rows_reported", 0):
            print(f"xmodal: skipped {len(self.bad_files.rows)} bad input(s); list in {path}",
                  file=sys.stderr)
            self._bad_rows_reported = len(self.bad_files.rows)
        return path

    # -- loaders ----------------------------------------------------------------------

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        dataset = self.datasets[split]
        # decoding needs workers; on GPU, reading the memory-mapped cache in workers too
        # keeps the (pinned) host side ahead of the device
        parallel = isinstance(dataset, DecodeDataset) or (
            torch.cuda.is_available() and isinstance(dataset, ArrayDataset))
        workers = self.num_workers if parallel else 0
        options = dict(
            batch_size=self.hparams.batch_size,
            drop_last=shuffle and len(dataset) > self.hparams.batch_size,
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=torch.cuda.is_available(),
        )
        if not shuffle:
            return DataLoader(dataset, shuffle=False, **options)
        # training: a seeded order per epoch that `--ckpt_path last` resumes mid-epoch
        generator = torch.Generator().manual_seed(self.hparams.seed)
        loader = ResumableLoader(dataset, sampler=self._train_sampler(dataset),
                                 generator=generator, **options)
        loader.position = self._batches_done
        return loader

    def _train_sampler(self, dataset: Dataset) -> ResumableSampler:
        """With ``group_by_length``, sequences of decoded code points (text ``layout:
        glyphs``) are batched by length: each batch is cut at its longest text."""
        if (self.hparams.get("group_by_length") and self.adapter.sequence_input
                and isinstance(dataset, ArrayDataset)):
            lengths = (np.asarray(dataset.array) != PAD).sum(axis=-1).tolist()
            return LengthGroupedSampler(lengths, self.hparams.batch_size, self.hparams.seed)
        return ResumableSampler(len(dataset), self.hparams.seed)

    def character_vocabulary(self, min_count: int = 2, ngram: int = 1) -> str:
        """The characters (``ngram`` 2 or 3: runs of that many adjacent characters,
        concatenated) in at least ``min_count`` texts of the training split (text
        ``layout: glyphs``), in code-point order: what ``char_embedding``
        (``pair_embedding``, ``triple_embedding``) learns a vector for. A character seen
        in one text only would learn that text's label."""
        if not self.adapter.sequence_input:
            raise ConfigError("char_embedding needs the text layout glyphs "
                              f"({type(self.adapter).__name__} decodes no characters)")
        if "train" not in self.datasets:
            self.setup("fit")
        dataset = self.datasets["train"]
        counts: dict[tuple[int, ...], int] = {}
        for index in range(len(dataset)):
            row = np.asarray(dataset.array[index] if isinstance(dataset, ArrayDataset)
                             else dataset[index]["input"])
            grams = np.stack([row[i:len(row) - ngram + 1 + i] for i in range(ngram)], axis=1)
            grams = grams[~np.isin(grams, (PAD, 32)).any(axis=1)]
            for gram in {tuple(g) for g in grams.tolist()}:
                counts[gram] = counts.get(gram, 0) + 1
        return "".join("".join(map(chr, gram)) for gram, count in sorted(counts.items())
                       if count >= min_count)

    def _batches_done(self) -> int:
        """Batches of the current epoch already trained on (saved in ``last.ckpt``)."""
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 0
        return int(trainer.fit_loop.epoch_loop.batch_progress.current.processed)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("predict", shuffle=False)


def _predict_items(path: Path) -> list[Item]:
    if path.is_file():
        return [Item(str(path), None, str(path))]
    if not path.is_dir():
        raise ConfigError(f"predict_root {path} does not exist")
    return [Item(str(p), None, str(p)) for p in sorted(path.rglob("*"))
            if p.is_file() and not p.name.startswith(".")]
