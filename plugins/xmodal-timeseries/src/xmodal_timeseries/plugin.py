"""The entry point xmodal loads (``[project.entry-points.xmodal]`` in pyproject.toml)."""

from xmodal import hookimpl


@hookimpl
def register_modalities(register):
    from xmodal_timeseries.adapter import TimeSeriesAdapter

    register("timeseries", TimeSeriesAdapter)


@hookimpl
def register_datasets(register):
    from xmodal_timeseries.datasets import NAMED, named, ucr

    register("ucr", ucr)
    for name in NAMED:
        register(name.lower(), named(name))
