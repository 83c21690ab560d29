"""Modality adapters: turn any input into an image tensor a vision backbone accepts."""

from xmodal.adapters.base import ModalityAdapter, create_adapter

__all__ = ["ModalityAdapter", "create_adapter"]
