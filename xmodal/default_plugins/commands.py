"""Built-in extra subcommands."""

from xmodal.hookspecs import hookimpl


@hookimpl
def register_commands(register):
    from xmodal.commands import plugins_cmd, preview

    register("plugins", plugins_cmd.main, "list installed plugins and what they provide")
    register("preview", preview.main, "render one input as the PNG the network sees")
