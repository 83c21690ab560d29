"""A plugin that registers a name a built-in plugin already owns."""

from xmodal import hookimpl


@hookimpl
def register_modalities(register):
    from xmodal.adapters.audio import AudioAdapter

    register("audio", AudioAdapter)
