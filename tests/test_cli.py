"""The user-facing contracts: `sciml solve` / `sciml.solve`, bad configs, results on disk."""
import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

import sciml
from sciml.cli import main
from sciml.config import ConfigError, load_run

ROOT = Path(__file__).resolve().parents[1]
LT3 = ROOT / "problems" / "kinetic" / "lt_inflow_kn1e-3.yaml"

TINY = {"solver.network.width": 16, "solver.density_network.width": 16, "solver.points.interior": 32,
        "solver.points.boundary": 16, "solver.points.initial": 16, "solver.velocity_nodes": 8,
        "solver.training.checkpoint_every": 5, "solver.training.log_every": 5}


@pytest.mark.parametrize("override, path, words", [
    ("solver.training.steps=-5", "solver.training.steps", ">= 0"),
    ("problem.epss=1", "problem.epss", "did you mean 'eps'"),
    ("problem.eps=abc", "problem.eps", "number"),
    ("problem.initial.f=__import__('os')", "problem.initial.f", "allowed"),
    ("problem.initial.f=foo(x)", "problem.initial.f", "unknown function 'foo'"),
    ("solver.kind=apn", "solver.kind", "did you mean 'apnn'"),
    ("problem.boundary.left={kind: periodic}", "problem.boundary", "both walls"),
    ("reference.data=nope.npz", "reference.data", "not found"),
    ("output.times=[0.5]", "output.times", "(0, 0.1]"),
    ("problem.velocity_nodes=7", "problem.velocity_nodes", "even"),
    ("solver.formulation=even", "solver.formulation", "even_odd"),
    ("solver.training.schedule={kind: steps}", "solver.training.schedule.kind", "step"),
    ("solver.training.aggregator_options={rcond: 0.1}", "solver.training", "without training.aggregator"),
])
def test_bad_config_exits_2_with_one_clear_line_and_writes_nothing(tmp_path, capsys, override, path, words):
    out = tmp_path / "run"
    code = main(["solve", str(LT3), "--set", override, "--out", str(out), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert f"config error at {path}" in err and words in err
    assert not out.exists()


@pytest.mark.parametrize("argv, path", [
    (["solve", str(LT3), "--solver", "apnn_even_odd_small"], "--device"),
    (["solve", str(ROOT / "problems" / "metacolloc" / "varcoeff2d.yaml")], "--device"),
    (["reproduce", "hrgrad_lt_methods", "--quick", "--methods", "sum"], "--device"),
    (["metacolloc", "train"], "--device"),
])
def test_a_device_that_is_not_here_exits_2_and_writes_nothing(tmp_path, capsys, monkeypatch, argv, path):
    import torch

    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    code = main(argv + ["--device", f"cuda:{n}", "--out", str(tmp_path / "run"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and f"config error at {path}" in err, err
    assert not (tmp_path / "run").exists()
    if n == 0:                                       # the configuration's own device is named too
        code = main(["solve", str(LT3), "--set", "solver.device=cuda", "--out", str(tmp_path / "run"), "--quiet"])
        assert code == 2 and "config error at solver.device" in capsys.readouterr().err
        assert not (tmp_path / "run").exists()


BGK1 = ROOT / "problems" / "kinetic" / "bgk_case_I.yaml"


@pytest.mark.parametrize("override, path, words", [
    ("solver.formulation=even_odd", "solver.formulation", "allowed: conservation"),
    ("problem.initial.T=1 + y", "problem.initial.T", "unknown name 'y'"),
    ("problem.boundary.left.rho=exp(x)", "problem.boundary.left.rho", "unknown name 'x'"),
    ("problem.boundary.left={kind: inflow}", "problem.boundary.left.kind", "maxwellian"),
    ("problem.v=[10, -10]", "problem.v", "hi > lo"),
    ("reference.published=none.npz", "reference.published", "not found"),
])
def test_bad_bgk_config_exits_2(tmp_path, capsys, override, path, words):
    out = tmp_path / "run"
    code = main(["solve", str(BGK1), "--set", override, "--out", str(out), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert f"config error at {path}" in err and words in err, err
    assert not out.exists()


def test_formulation_table_of_the_config_matches_the_solvers():
    from sciml.config.problem import FORMULATIONS_BY_EQUATION
    from sciml.physics import BGKProblem, LinearTransportProblem
    from sciml.solvers.apnn import FORMULATIONS

    assert set(FORMULATIONS_BY_EQUATION["linear_transport"]) == set(FORMULATIONS[LinearTransportProblem])
    assert set(FORMULATIONS_BY_EQUATION["bgk"]) == set(FORMULATIONS[BGKProblem])


def test_bad_files_and_presets(tmp_path, capsys):
    assert main(["solve", str(tmp_path / "missing.yaml")]) == 2
    assert "problem file not found" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("problem: [1, 2\n")
    assert main(["solve", str(bad)]) == 2
    assert "invalid YAML" in capsys.readouterr().err
    assert main(["solve", str(LT3), "--solver", "nosuch"]) == 2
    err = capsys.readouterr().err
    assert "unknown solver preset 'nosuch'" in err and "apnn_even_odd" in err
    assert main(["reproduce", "nosuch"]) == 2
    assert "unknown validation entry" in capsys.readouterr().err


def test_console_script_and_module_exit_code():
    r = subprocess.run([sys.executable, "-m", "sciml", "solve", str(LT3), "--set", "problem.eps=-1"],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and "problem.eps" in r.stderr and "Traceback" not in r.stderr


def test_reference_solver_from_python_matches_published_data():
    sol = sciml.solve(str(LT3), solver="reference")
    assert sol.fields["rho"].shape == (4, 100)
    assert list(sol.grid["t"]) == [0.01, 0.02, 0.05, 0.1]
    # our classical AP solver against the authors' reference density (measured 2.8e-3 at t = 0.1)
    assert sol.metrics["rel_l2_rho"] < 5e-3
    assert sol.metrics["rel_l2_rho_all_times"] < 6e-3


def test_solve_writes_result_with_config_versions_and_figures(tmp_path):
    out = tmp_path / "lt"
    code = main(["solve", str(LT3), "--solver", "apnn_even_odd_small", "--out", str(out), "--quiet",
                 *sum((["--set", f"{k}={v}"] for k, v in TINY.items()), []), "--set", "solver.training.steps=10"])
    assert code == 0
    with h5py.File(out / "result.h5") as h:
        assert h["fields/rho"].shape == (4, 100)
        assert json.loads(h["fields/rho"].attrs["dims"]) == ["t", "x"]
        assert h["grid/x"].shape == (100,) and h["grid/t"].shape == (4,)
        assert "rel_l2_rho" in h["metrics"].attrs and h["reference/rho"].shape == (4, 100)
        cfg = yaml.safe_load(h.attrs["config"])
        assert cfg["solver"]["network"]["width"] == 16 and cfg["problem"]["eps"] == 1e-3
        versions = json.loads(h.attrs["versions"])
        assert "torch" in versions and "numpy" in versions
        for key in ("device", "dtype", "seed", "git_revision", "created"):
            assert key in h.attrs
        assert "history" in h and h["history/step"].shape[0] >= 2
    assert (out / "figures" / "density.png").stat().st_size > 1000
    assert (out / "figures" / "training.png").stat().st_size > 1000
    assert not list(out.glob(".tmp-*"))
    lines = (out / "train" / "metrics.jsonl").read_text().splitlines()
    assert json.loads(lines[-1])["step"] >= 5


def test_resume_gives_the_same_result_as_an_uninterrupted_run(tmp_path):
    kw = dict(solver="apnn_even_odd_small", progress=False)
    a = sciml.solve(str(LT3), overrides={**TINY, "solver.training.steps": 20}, out=tmp_path / "a", **kw)
    sciml.solve(str(LT3), overrides={**TINY, "solver.training.steps": 10}, out=tmp_path / "b", **kw)
    b = sciml.solve(str(LT3), overrides={**TINY, "solver.training.steps": 20}, out=tmp_path / "b", resume=True, **kw)
    assert np.array_equal(a.fields["rho"], b.fields["rho"])
    assert a.metrics["final_loss"] == b.metrics["final_loss"]


def test_resume_of_an_interrupted_run_checks_its_configuration(tmp_path):
    """An interrupted run (checkpoint, no result.h5 yet) is continued only with the
    configuration it was started with (steps, output and bookkeeping aside)."""
    kw = dict(solver="apnn_even_odd_small", progress=False)
    sciml.solve(str(LT3), overrides={**TINY, "solver.training.steps": 10}, out=tmp_path / "b", **kw)
    (tmp_path / "b" / "result.h5").unlink()          # as if interrupted after its last checkpoint
    assert (tmp_path / "b" / "train" / "config.yaml").is_file()
    with pytest.raises(ConfigError, match=r"--resume.*solver.training.lr"):
        sciml.solve(str(LT3), overrides={**TINY, "solver.training.steps": 20, "solver.training.lr": 1e-4},
                    out=tmp_path / "b", resume=True, **kw)
    b = sciml.solve(str(LT3), overrides={**TINY, "solver.training.steps": 20, "solver.training.log_every": 3},
                    out=tmp_path / "b", resume=True, **kw)
    assert b.metrics["steps"] == 20


def test_overrides_and_dict_configs():
    run = load_run(LT3, overrides=["problem.eps=1e-8", "solver.training.lr=5e-4"])
    assert run.config.problem.eps == 1e-8 and run.config.solver.training.lr == 5e-4
    run2 = load_run(LT3, overrides={"problem.eps": 1e-8})
    assert run2.config.problem.eps == 1e-8
    # the same content as a dict, with the preset spelled out
    data = yaml.safe_load(LT3.read_text())
    data["reference"] = {}
    data["solver"] = {"kind": "reference", "nx": 100, "nv": 16}
    sol = sciml.solve(data)
    assert sol.fields["rho"].shape == (4, 100) and sol.solver == "reference"
    with pytest.raises(ConfigError, match="solver.nx"):
        load_run(data, overrides=["solver.nx=2"])


def test_list_shows_problems_presets_and_entries(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "lt_inflow_kn1e-3.yaml" in out and "apnn_even_odd" in out and "lt_evenodd_kn1e-3" in out


def test_shipped_files_are_found_from_any_working_directory(tmp_path, capsys, monkeypatch):
    """Outside the checkout: `sciml list` shows the shipped problems and presets, and a
    problem file of the user's own names a shipped preset."""
    monkeypatch.chdir(tmp_path)
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert str(LT3) in out and "  apnn_even_odd_small\n" in out and "lt_evenodd_kn1e-3" in out
    mine = tmp_path / "mine.yaml"
    problem = _heat_problem({"left": {"kind": "periodic"}, "right": {"kind": "periodic"}})
    del problem["solver"]
    mine.write_text(yaml.safe_dump(problem))
    run = load_run(mine, solver="reference")
    assert run.resolved["solver"]["kind"] == "reference"
    with pytest.raises(ConfigError, match="unknown solver preset 'nope'; available: .*apnn_even_odd_small"):
        load_run(mine, solver="nope")
    # solvers/ also holds MetaColloc training files: not presets, not listed as such
    with pytest.raises(ConfigError, match="'metacolloc_train_2d' .* is not a solver preset"):
        load_run(mine, solver="metacolloc_train_2d")
    assert "metacolloc_train_2d" not in out
    assert load_run(mine, solver="reference", overrides="solver.nx=64").resolved["solver"]["nx"] == 64  # one string


def test_every_shipped_problem_and_entry_validates():
    from sciml.validation import list_entries, method_overrides

    for p in sorted((ROOT / "problems").glob("**/*.yaml")):
        load_run(p)
        if p.parent.name != "metacolloc":           # kinetic problems also have a classical solver
            load_run(p, solver="reference")
    entries = list_entries()
    assert {e.id for e in entries} >= {"lt_evenodd_kn1e-3", "lt_evenodd_sine_kn1e-8", "metacolloc_suite"}
    for e in entries:
        over = {**e.overrides, **(e.quick.overrides if e.quick else {})}
        over = {k: v for k, v in over.items() if not k.startswith("params.")}    # study parameters
        load_run(ROOT / e.problem, solver=e.solver, overrides=over)
        for name in e.methods:                      # every method of a comparison, variants included
            load_run(ROOT / e.problem, solver=e.solver, overrides={**over, **method_overrides(name, e.variants)})


def _heat_problem(boundary, f0="1 + 0.5*sin(2*pi*x)"):
    return {"problem": {"name": "heat", "equation": "linear_transport", "eps": 1e-8, "t": [0, 0.05],
                        "x": [0, 1], "initial": {"f": f0}, "boundary": boundary},
            "output": {"times": [0.05], "nx": 50}, "solver": {"kind": "reference", "nx": 200, "nv": 16}}


def test_periodic_and_dirichlet_walls_through_the_config():
    per = sciml.solve(_heat_problem({"left": {"kind": "periodic"}, "right": {"kind": "periodic"}}))
    x = per.grid["x"]
    # diffusion limit rho_t = rho_xx / 3: the mode decays like exp(-4 pi^2 t / 3); cell averages
    h = 1 / 50
    avg = np.sin(2 * np.pi * x) * np.sin(np.pi * h) / (np.pi * h)
    exact = 1 + 0.5 * np.exp(-4 * np.pi**2 * 0.05 / 3) * avg
    assert np.linalg.norm(per.fields["rho"][0] - exact) / np.linalg.norm(exact) < 1e-3
    # Dirichlet walls (isotropic incoming f = rho_b) equal the same inflow data
    d = sciml.solve(_heat_problem({"left": {"kind": "dirichlet", "rho": "1"}, "right": {"kind": "dirichlet", "rho": "0"}},
                                  f0="0"))
    i = sciml.solve(_heat_problem({"left": {"kind": "inflow", "f": "1"}, "right": {"kind": "inflow", "f": "0"}}, f0="0"))
    assert np.array_equal(d.fields["rho"], i.fields["rho"])
    assert d.fields["rho"][0, 0] > 0.9 and d.fields["rho"][0, -1] < 0.1


def test_check_validates_prints_the_plan_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["solve", str(LT3), "--solver", "apnn_even_odd_small", "--out", str(out), "--check"]) == 0
    text = capsys.readouterr().out
    resolved = yaml.safe_load(text)          # the printed configuration is the resolved YAML
    assert resolved["solver"]["kind"] == "apnn" and resolved["solver"]["training"]["steps"] > 0
    assert "configuration OK" in text and not out.exists()
    assert main(["solve", str(LT3), "--set", "solver.training.steps=-5", "--check"]) == 2
    capsys.readouterr()
    assert main(["metacolloc", "train", "--set", "steps=7", "--out", str(out), "--check"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["steps"] == 7 and not out.exists()

    # a comparison: one line per run (method x seed) with what --resume would do there
    cmp_out = tmp_path / "cmp"
    argv = ["reproduce", "hrgrad_lt_methods", "--quick", "--methods", "sum,hrgrad", "--seeds", "0,1",
            "--out", str(cmp_out), "--resume", "--check"]
    capsys.readouterr()
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "4 of 4 run(s) to make" in text and text.count(": to run\n") == 4 and not cmp_out.exists()
    stale = cmp_out / "hrgrad" / "seed1" / "train"        # a run made with another configuration
    stale.mkdir(parents=True)
    (stale / "config.yaml").write_text(LT3.read_text())
    assert main(argv) == 2                           # the run would stop there: said before it starts
    text = capsys.readouterr().out
    assert "hrgrad/seed1: REFUSED with --resume: the run there has another configuration" in text
    assert "1 run folder(s) hold another configuration" in text
    assert main(argv[:-1]) == 2                      # and the real run stops before its first run
    assert "config error at --resume" in capsys.readouterr().err and not (cmp_out / "sum").exists()
    assert main(argv[:-2] + ["--check"]) == 0        # without --resume: replaced
    assert "hrgrad/seed1: to run (replaces the run there)" in capsys.readouterr().out
    assert sorted(p.name for p in cmp_out.rglob("*")) == ["config.yaml", "hrgrad", "seed1", "train"]


def test_a_saved_run_loads_back_and_shows(tmp_path, capsys):
    out = tmp_path / "ref"
    sol = sciml.solve(LT3, solver="reference", out=out, progress=False)
    back = sciml.load(out)
    assert back.solver == sol.solver and back.config_text == sol.config_text and back.dims == sol.dims
    assert set(back.fields) == set(sol.fields) and np.array_equal(back["rho"], sol["rho"])
    assert np.array_equal(back.grid["x"], sol.grid["x"]) and back.metrics["rel_l2_rho"] == sol.metrics["rel_l2_rho"]
    assert back.meta["problem"] == "lt_inflow_kn1e-3" and "torch" in back.meta["versions"]
    assert sorted(back.summary().splitlines()) == sorted(sol.summary().splitlines())   # h5 keeps keys sorted
    for f in (out / "figures").iterdir():
        f.unlink()
    capsys.readouterr()
    assert main(["solve", str(LT3), "--solver", "reference", "--out", str(tmp_path / "again"), "--quiet"]) == 0
    assert "replacing" not in capsys.readouterr().err
    assert main(["solve", str(LT3), "--solver", "reference", "--out", str(tmp_path / "again"), "--quiet"]) == 0
    assert "sciml: replacing the run in" in capsys.readouterr().err       # said, not silent
    assert main(["show", str(out), "--config", "--figures"]) == 0
    text = capsys.readouterr().out
    assert "rel_l2_rho" in text and "created " in text and "kind: reference" in text
    assert (out / "figures" / "density.png").is_file()
    (tmp_path / "cmp").mkdir()
    (tmp_path / "cmp" / "comparison.md").write_text("| method | worst |\n")
    assert main(["show", str(tmp_path / "cmp")]) == 0 and capsys.readouterr().out == "| method | worst |\n"
    assert main(["show", str(tmp_path / "nothing")]) == 2
    assert "config error at run: no result at" in capsys.readouterr().err


def test_keys_documents_the_configuration(capsys):
    assert main(["keys"]) == 0
    everything = capsys.readouterr().out
    assert "problem: " in everything and "  training: section" in everything
    assert main(["keys", "solver.training"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("training: section") and "  steps: int, >= 0" in text and "aggregator_options" in text
    assert main(["keys", "problem.initial"]) == 0      # one key, two equations: each says its own
    text = capsys.readouterr().out
    assert "# equation: linear_transport" in text and "# equation: bgk" in text and "T: str  [required]" in text
    assert main(["keys", "solver.device"]) == 0        # the same text in several solvers: once
    assert capsys.readouterr().out.count("device: str") == 1
    assert main(["keys", "solver.trainin"]) == 2
    assert "config error at solver.trainin: unknown key 'trainin' (did you mean 'training'?)" in capsys.readouterr().err


def test_pde_data_that_is_not_finite_stops_with_one_line(tmp_path, capsys):
    """Data that overflow or divide by zero at collocation points: exit 1 with what and
    where, nothing written; a literal too large for a float is a config error (exit 2);
    an exact solution constant in one coordinate is fine."""
    poisson = ROOT / "problems" / "metacolloc" / "poisson2d.yaml"
    out = tmp_path / "run"
    assert main(["solve", str(poisson), "--set", "problem.exact=1/x", "--out", str(out), "--quiet"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "the boundary data: non-finite values" in err and not out.exists()
    assert main(["solve", str(poisson), "--set", "problem.operator=-lap(u)*1e400", "--out", str(out)]) == 2
    assert "config error at problem.operator: number 1e400 is too large" in capsys.readouterr().err
    three_d = "problem.domain.bounds={x: [0, 1], y: [0, 1], z: [0, 1]}"
    assert main(["solve", str(poisson), "--set", three_d, "--set", "problem.exact=x*y*z", "--out", str(out)]) == 2
    assert "config error at solver.basis: the basis '2d' is 2D" in capsys.readouterr().err and not out.exists()
    sol = sciml.solve(poisson, overrides={"problem.exact": "x**2 - 0.5*x", "output.grid": 21})
    assert sol.metrics["rel_l2_u"] < 1e-10
