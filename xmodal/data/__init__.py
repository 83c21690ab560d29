"""Data: data set specs, folder/CSV readers, the decode cache and the DataModule."""

from xmodal.data.datamodule import XModalDataModule
from xmodal.data.paths import data_root
from xmodal.data.spec import DatasetSpec, Item, split_off

__all__ = ["DatasetSpec", "Item", "XModalDataModule", "data_root", "split_off"]
