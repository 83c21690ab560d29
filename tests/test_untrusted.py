"""Untrusted files never run code: pickle-bomb checkpoints and YAML tags are refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from xmodal.backbones import load_state_dict_file
from xmodal.checkpointing import UnsafeCheckpoint, check_checkpoint
from xmodal.cli import main
from xmodal.errors import WeightsUnavailable

TINY = ["--model.backbone", "test_efficientnet", "--model.pretrained", "false",
        "--trainer.max_epochs", "1", "--data.num_workers", "0"]


class Bomb:
    """Unpickling this runs a shell command (what a malicious checkpoint does)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture()
def bomb(tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "PWNED"
    path = tmp_path / "model.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "payload": Bomb(marker)}, path)
    return path, marker


def test_the_bomb_is_real(bomb) -> None:
    """Sanity check: loading it the unsafe way does run the command."""
    path, marker = bomb
    torch.load(path, weights_only=False)
    assert marker.exists()
    marker.unlink()


def test_check_checkpoint_refuses_a_pickle_bomb(bomb) -> None:
    path, marker = bomb
    with pytest.raises(UnsafeCheckpoint, match="weights_only"):
        check_checkpoint(path)
    with pytest.raises(WeightsUnavailable, match="refusing"):
        load_state_dict_file(path)
    assert not marker.exists()


def test_pickle_bomb_as_model_weights_is_one_line(bomb, tmp_path, capsys) -> None:
    path, marker = bomb
    code = main(["fit", "--modality", "audio", *TINY, "--model.pretrained", "true",
                 "--model.weights", str(path),
                 "--trainer.default_root_dir", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert code != 0
    assert "refusing to load" in err and "Traceback" not in err
    assert not marker.exists()


@pytest.mark.parametrize("command", ["fit", "predict"])
def test_pickle_bomb_as_ckpt_path_is_one_line(command, bomb, tmp_path, capsys) -> None:
    path, marker = bomb
    code = main([command, "--modality", "audio", *TINY, "--ckpt_path", str(path),
                 "--trainer.default_root_dir", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert code == 2
    lines = [line for line in err.splitlines() if line.startswith("xmodal: error:")]
    assert len(lines) == 1 and "refusing to load" in lines[0] and "weights_only" in lines[0]
    assert "Traceback" not in err
    assert not marker.exists()


def test_pickle_bomb_as_embed_checkpoint(bomb, tmp_path, capsys) -> None:
    path, marker = bomb
    code = main(["embed", "--checkpoint", str(path), str(tmp_path), "-o", str(tmp_path / "v")])
    assert code != 0
    assert "Traceback" not in capsys.readouterr().err
    assert not marker.exists()


@pytest.mark.parametrize("command", ["fit", "check-data"])
def test_yaml_python_tags_are_not_evaluated(command, tmp_path, capsys) -> None:
    marker = tmp_path / "PWNED"
    config = tmp_path / "evil.yaml"
    config.write_text(
        "data:\n"
        f"  dataset: !!python/object/apply:os.system [\"touch {marker}\"]\n"
        "  modality: audio\n"
    )
    with pytest.raises(SystemExit) if command == "fit" else _no_raise():
        code = main([command, "--config", str(config)])
        assert code == 2
    assert not marker.exists()
    err = capsys.readouterr().err
    assert "python/object" in err or "could not determine a constructor" in err or "error" in err


class _no_raise:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return False
