"""The docs are executable: every ```bash block in docs/*.md runs, page by page.

Blocks of one page run in order in one ``bash -e`` shell (so ``cd`` and files carry
over, as for a reader following along) inside a scratch folder that links the
repository's ``xmodal``, ``plugins``, ``configs``, ``scripts``, ``bench`` and ``tests``.
A page must leave ``bench/results`` as it is (bench scripts write to ``--out runs/...``).
A block right after ``<!-- not-run -->`` is illustrative and skipped; it is kept only
beside a runnable, test-sized version of the same command. ``pip install`` goes to a scratch
``--target`` (``PIP_TARGET``) that is put on ``PYTHONPATH``, never into the
environment running the tests, and offline (``PIP_NO_INDEX``).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
LINKED = ("xmodal", "plugins", "configs", "scripts", "bench", "tests", "pyproject.toml")
RESULTS = ROOT / "bench" / "results"
BLOCK = re.compile(r"(<!-- not-run -->\s*\n)?```bash\n(.*?)```", re.S)


def bash_blocks(page: Path) -> list[str]:
    """The page's runnable ```bash blocks, in order."""
    return [body for skip, body in BLOCK.findall(page.read_text()) if not skip]


PAGES = sorted(p for p in DOCS.glob("*.md") if bash_blocks(p))


def test_generated_docs_are_current():
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_docs.py"), "--check"],
                            capture_output=True, text=True, timeout=600,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr


def test_every_hook_is_documented():
    from xmodal import hookspecs

    reference = (DOCS / "hookspecs.md").read_text()
    tutorial = (DOCS / "writing-a-plugin.md").read_text()
    for name in (n for n in dir(hookspecs) if n.startswith("register_")):
        assert f"### `{name}(" in reference, name
        assert name in tutorial, f"writing-a-plugin.md never mentions {name}"


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_doc_commands_run(page, tmp_path):
    data = os.environ.get("XMODAL_DATA")
    if not data or not Path(data).is_dir():
        pytest.skip("the docs' commands need XMODAL_DATA")
    for name in LINKED:
        (tmp_path / name).symlink_to(ROOT / name)
    site = tmp_path / "site-packages"
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "XMODAL_DATA": str(Path(data).resolve()),
        "XMODAL_CACHE": str(tmp_path / "cache"),
        "PYTHONPATH": str(site),
        "PIP_TARGET": str(site), "PIP_NO_INDEX": "1", "PIP_NO_DEPS": "1",
        "PIP_NO_BUILD_ISOLATION": "0", "PIP_QUIET": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "OMP_NUM_THREADS": "1",
    }
    env.pop("XMODAL_LOAD_PLUGINS", None)
    script = "set -euo pipefail\n" + "\n".join(bash_blocks(page))
    results_before = results_state()
    result = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=1500)
    assert result.returncode == 0, (
        f"{page.name}: a command failed\n--- stdout\n{result.stdout[-3000:]}\n"
        f"--- stderr\n{result.stderr[-3000:]}")
    changed = {name for name, state in results_state().items() if results_before.get(name) != state}
    assert not changed, f"{page.name} wrote measured results: {sorted(changed)}"


def results_state() -> dict[str, tuple[int, int]]:
    """(size, mtime) of every file in ``bench/results``."""
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in RESULTS.glob("*") if p.is_file()}
