"""A working plugin: a data set of two constant series, to show good plugins still load."""

from xmodal import hookimpl


@hookimpl
def register_datasets(register):
    register("sample_good", good_dataset)


def good_dataset(root):
    from xmodal.data import DatasetSpec, Item

    return DatasetSpec(classes=["a", "b"], train=[Item("a", 0, "a"), Item("b", 1, "b")])
