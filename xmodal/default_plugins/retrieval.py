"""Built-in retrieval plugin: the hashing head and the embed/index/search/export commands."""

from xmodal.hookspecs import hookimpl


@hookimpl
def register_heads(register):
    from xmodal.tasks.hashing import HashingTask

    register("hashing", HashingTask)


@hookimpl
def register_commands(register):
    from xmodal.commands import embed, export, index_cmd, search

    register("embed", embed.main, "write one vector per input (.npy + CSV manifest)")
    register("index", index_cmd.main, "pack binary codes of inputs into a Hamming index")
    register("search", search.main, "nearest items of a query file by Hamming distance")
    register("export", export.main, "export a model to ONNX or TorchScript, checked against PyTorch")
