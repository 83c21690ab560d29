"""A plugin that raises half way through registering."""

from xmodal import hookimpl


@hookimpl
def register_datasets(register):
    register("half_registered", lambda root: None)
    raise RuntimeError("cannot find my model files")
