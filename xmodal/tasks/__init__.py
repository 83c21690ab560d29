"""Task heads: one LightningModule per target task over :class:`BaseTask`."""

from xmodal.tasks.base import BaseTask
from xmodal.tasks.classification import ClassificationTask

__all__ = ["BaseTask", "ClassificationTask"]
