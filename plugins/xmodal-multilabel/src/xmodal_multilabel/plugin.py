"""The entry point xmodal loads: the ``multilabel`` head and a small multi-label data set."""

from xmodal import hookimpl


@hookimpl
def register_heads(register):
    from xmodal_multilabel.task import MultiLabelTask

    register("multilabel", MultiLabelTask)


@hookimpl
def register_datasets(register):
    from xmodal_multilabel.datasets import fsdd_attributes

    register("fsdd_attributes", fsdd_attributes)
