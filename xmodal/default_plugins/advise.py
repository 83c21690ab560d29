"""Built-in ``xmodal advise`` command (fine-tuning strategy recommendation)."""

from xmodal.hookspecs import hookimpl


@hookimpl
def register_commands(register):
    from xmodal.commands import advise

    register("advise", advise.main, "recommend a fine-tuning strategy for a data set (size x similarity)")
