"""Built-in reliability commands: ``xmodal check-data``."""

from xmodal.hookspecs import hookimpl


@hookimpl
def register_commands(register):
    from xmodal.commands import check_data

    register("check-data", check_data.main,
             "scan a data set (all splits) for unreadable inputs without training")
