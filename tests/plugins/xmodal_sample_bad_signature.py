"""A plugin whose hook names an argument the hookspec does not have."""

from xmodal import hookimpl


@hookimpl
def register_datasets(registr):
    registr("never", None)
