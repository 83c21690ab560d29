"""A plugin with a misspelt hook name."""

from xmodal import hookimpl


@hookimpl
def register_modalites(register):
    register("never", None)
