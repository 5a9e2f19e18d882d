"""Every Python example of the README and of docs/*.md runs (scikit-fem's rule:
examples are tests). Each block runs as written, in a fresh namespace, from a folder
that holds the checkout's problems/ and data/ (the examples name them relatively);
the only change: a ``sciml.solve`` that trains is cut to a few steps, so that the
suite stays fast. What a block asserts or prints is not checked here; that it runs
against the current API is."""
import contextlib
import io
import re
from pathlib import Path

import pytest

import sciml

ROOT = Path(__file__).resolve().parents[1]
# pages whose examples their family's tests run and check the numbers of
CHECKED_ELSEWHERE = {"hrgrad": "tests/test_mtl.py", "metacolloc": "tests/test_metacolloc.py"}
PAGES = [ROOT / "README.md", *sorted(p for p in (ROOT / "docs").glob("*.md") if p.stem not in CHECKED_ELSEWHERE)]


def _blocks():
    for page in PAGES:
        for i, code in enumerate(re.findall(r"^```python\n(.*?)^```", page.read_text(), flags=re.S | re.M)):
            yield pytest.param(code, id=f"{page.stem}-{i + 1}")


def test_the_pages_have_examples():
    assert len(list(_blocks())) >= 4


@pytest.mark.parametrize("code", list(_blocks()))
def test_docs_python_example_runs(code, tmp_path, monkeypatch):
    from sciml.config import load_run

    for name in ("problems", "data"):
        (tmp_path / name).symlink_to(ROOT / name, target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    real = sciml.solve

    def short(config, *, solver=None, overrides=(), **kw):
        if hasattr(load_run(config, solver=solver, overrides=overrides).config.solver, "training"):
            if isinstance(overrides, dict):
                overrides = {**overrides, "solver.training.steps": 10}
            else:
                overrides = [*overrides, "solver.training.steps=10"]
        return real(config, solver=solver, overrides=overrides, progress=False, **kw)

    monkeypatch.setattr(sciml, "solve", short)
    with contextlib.redirect_stdout(io.StringIO()):
        exec(compile(code, "<docs example>", "exec"), {"__name__": "__docs__"})
