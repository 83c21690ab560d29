"""A plugin that forgot ``@hookimpl``: pluggy alone would ignore it silently."""


def register_datasets(register):
    register("never", None)


def register_heds(register):
    register("never", None)
