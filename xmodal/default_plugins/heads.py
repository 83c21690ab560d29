"""Built-in task heads."""

from xmodal.hookspecs import hookimpl


@hookimpl
def register_heads(register):
    from xmodal.tasks.classification import ClassificationTask

    register("classification", ClassificationTask)
