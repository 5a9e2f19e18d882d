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


def _commands():
    """The `sciml solve` / `sciml reproduce` command lines of the pages' bash blocks,
    with the pages' shell arrays (``MID=(...)``) expanded by bash; lines that show a
    pattern rather than a command (``...``, ``[--quick]``, ``FILE``) are left out."""
    import subprocess

    for page in PAGES_ALL:
        blocks = re.findall(r"^```bash\n(.*?)^```", page.read_text(), flags=re.S | re.M)
        arrays, lines = [], []
        for block in blocks:
            block = re.sub(r"\\\n\s*", " ", block)
            arrays += re.findall(r"^[A-Z][A-Z_]*=\((?:[^()])*\)", block, flags=re.M)
            for line in block.splitlines():
                line = re.sub(r"\s+#.*$", "", line.strip())
                if re.match(r"sciml (solve|reproduce) ", line) and not re.search(r"\.\.\.|\[--|FILE|NAME|<", line):
                    lines.append(line)
        if not lines:
            continue
        script = "\n".join(arrays + ['sciml() { printf "%s\\x1f" "$@"; printf "\\x1e"; }'] + lines)
        out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True).stdout
        for line, record in zip(lines, out.split("\x1e")):
            yield pytest.param(record.split("\x1f")[:-1], id=f"{page.stem}: {line[:60]}")


PAGES_ALL = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
COMMANDS = list(_commands())


def test_the_pages_have_commands():
    assert len(COMMANDS) >= 25


@pytest.mark.parametrize("argv", COMMANDS)
def test_docs_command_line_is_valid(argv, tmp_path, monkeypatch, capsys):
    """Every command the pages show is accepted as it is written (`--check`: the
    configuration of each run validated, nothing run or written)."""
    import torch
    from sciml.cli import main

    for name in ("problems", "data"):
        (tmp_path / name).symlink_to(ROOT / name, target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    if "--device" in argv and not torch.cuda.is_available():        # a GPU command on a CPU machine
        i = argv.index("--device")
        argv = argv[:i] + argv[i + 2:]
    code = main(argv + ["--check"])
    assert code == 0, capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "problems"]
