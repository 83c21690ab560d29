"""The hook specifications every xmodal plugin implements against.

Built-in modalities, backbones, heads and data sets register through exactly these
hooks, so a third-party package is never second-class. Every ``register_*`` hook
follows simonw/llm's style: xmodal passes a ``register`` callback and the plugin calls
it once per thing it provides. The host records which plugin registered what and
rejects duplicate names with a clear message.

Bump :data:`VERSION` when a hook's signature changes incompatibly.
"""

from __future__ import annotations

import pluggy

VERSION = "1.0"

hookspec = pluggy.HookspecMarker("xmodal")
hookimpl = pluggy.HookimplMarker("xmodal")


# ---------------------------------------------------------------------------
# Inputs: modality adapters and data sets
# ---------------------------------------------------------------------------


@hookspec
def register_modalities(register):
    """Register modality adapters: input files or values -> image tensors.

    Called once when plugins load.

    Args:
        register: ``register(name, adapter_class)``. ``adapter_class`` subclasses
            :class:`xmodal.adapters.ModalityAdapter`; ``name`` is what users pass as
            ``--modality NAME``.

    Returns:
        Nothing; results are ignored.
    """


@hookspec
def register_datasets(register):
    """Register named data sets.

    Called once when plugins load.

    Args:
        register: ``register(name, factory)``. ``factory(root, **options)`` returns a
            :class:`xmodal.data.DatasetSpec` (items per split, class names and the
            default modality). ``root`` is the data root (``--data.root``, else
            ``$XMODAL_DATA``), possibly ``None``.

    Returns:
        Nothing; results are ignored.
    """


# ---------------------------------------------------------------------------
# Models: backbones, pretrained weights, task heads
# ---------------------------------------------------------------------------


@hookspec
def register_weight_sources(register):
    """Register offline sources of pretrained weights for timm models.

    Called once when plugins load. Sources are consulted before timm's own hub
    download, so packaged weights work on a machine without network.

    Args:
        register: ``register(model_name, loader)``. ``loader()`` returns a state dict
            whose keys match ``timm.create_model(model_name)`` (classifier included
            or not) and may raise :class:`xmodal.errors.WeightsUnavailable`.

    Returns:
        Nothing; results are ignored.
    """


@hookspec
def register_heads(register):
    """Register task heads (LightningModules).

    Called once when plugins load.

    Args:
        register: ``register(name, task_class)``. ``task_class`` subclasses
            :class:`xmodal.tasks.BaseTask`; configs refer to it as
            ``model: {class_path: NAME}`` or by its import path.

    Returns:
        Nothing; results are ignored.
    """


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------


@hookspec
def register_commands(register):
    """Register extra ``xmodal`` subcommands beside fit/validate/test/predict.

    Called once when the CLI starts.

    Args:
        register: ``register(name, main, help)``. ``main(argv: list[str]) -> int``
            parses its own arguments (argparse is fine) and returns an exit code.

    Returns:
        Nothing; results are ignored.
    """
