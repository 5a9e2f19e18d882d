"""One eps-conditioned network for several Knudsen numbers: shared networks, per-task
losses and fields, multi-task rules from the YAML, clear errors."""
import json

import numpy as np
import pytest
import torch

import sciml
from sciml.cli import main
from sciml.config import ConfigError
from sciml.domain import Box, VelocitySpace
from sciml.physics import Inflow, LinearTransportProblem
from sciml.physics.multitask import MultiEps
from sciml.solvers.apnn_lt import EvenOdd, NetSpec, PointSpec
from sciml.nn import MLP, ResNet
from sciml.nn.conditioning import Embedding, FiLM
from sciml.solvers.multitask import MultiTask

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MULTI = ROOT / "problems" / "hrgrad" / "lt_inflow_multi_eps.yaml"
TINY = {"problem.eps": [1.0, 1e-3, 1e-8], "solver.training.steps": 20, "solver.network.width": 16,
        "solver.density_network.width": 16, "solver.points.interior": 32, "solver.points.boundary": 16,
        "solver.points.initial": 16, "solver.velocity_nodes": 8, "solver.training.log_every": 5,
        "solver.training.checkpoint_every": 10}


def lt(eps=1e-3):
    return LinearTransportProblem(eps=eps, domain=Box.of(t=(0.0, 0.1), x=(0.0, 1.0)),
                                  velocity=VelocitySpace.gauss_legendre(-1, 1, 8), f0=lambda x, v: 0 * x * v,
                                  left=Inflow(1.0), right=Inflow(0.0), zero_initial_density=True)


def test_tasks_share_the_conditioned_networks():
    prob = MultiEps.of(lt(), [1.0, 1e-4, 1e-8])
    m = MultiTask(prob, EvenOdd, net=NetSpec("mlp", 16, 2, "tanh"), points=PointSpec(16, 8, 8))
    single = EvenOdd(lt(), net=NetSpec("mlp", 16, 2, "tanh"), points=PointSpec(16, 8, 8))
    # the same networks plus one input (log10 eps) in each first layer: 3 networks x 16 weights
    assert sum(p.numel() for p in m.parameters()) == sum(p.numel() for p in single.parameters()) + 3 * 16
    assert {id(p) for t in m.tasks for p in t.parameters()} == {id(p) for p in m.parameters()}
    t, x = torch.rand(5) * 0.1, torch.rand(5)
    obs = m.observables(t, x)
    assert set(obs) == {"rho_eps1", "rho_eps0.0001", "rho_eps1e-08"}
    assert not torch.allclose(obs["rho_eps1"], obs["rho_eps1e-08"])      # the encoding matters
    terms = m.loss(0, torch.Generator().manual_seed(0))
    assert {k.split("/")[0] for k in terms} == {"eps1", "eps0.0001", "eps1e-08"}
    # each task has its own eps: relaxed initial data only where eps^2 << t_end
    assert [tk.relax_initial for tk in m.tasks] == [False, True, True]
    with pytest.raises(ValueError, match="distinct"):
        MultiEps.of(lt(), [1e-3, 1e-3])


@pytest.mark.parametrize("encoding", [Embedding(dim=4, width=8), FiLM(width=8)])
def test_eps_encodings_condition_every_network(encoding):
    prob = MultiEps.of(lt(), [1.0, 1e-4, 1e-8])
    m = MultiTask(prob, EvenOdd, encoding=encoding, net=NetSpec("mlp", 16, 2, "tanh"), points=PointSpec(16, 8, 8))
    nets = [f.net for f in m.shared.values()]
    assert len(nets) == 3 and all(type(n).__name__ == ("FiLMNet" if isinstance(encoding, FiLM) else "EmbeddedNet")
                                  for n in nets)
    t, x = torch.rand(5) * 0.1, torch.rand(5)
    if isinstance(encoding, FiLM):
        # identity modulation at initialisation: every task sees the same function ...
        obs = m.observables(t, x)
        assert torch.equal(obs["rho_eps1"], obs["rho_eps1e-08"])
        # ... but the modulation receives gradient, and after one step the tasks differ
        sum(v.sum() for v in m.loss(0, torch.Generator().manual_seed(0)).values()).backward()
        assert all(n.modulation[-1].weight.grad.abs().sum() > 0 for n in nets)
        with torch.no_grad():
            for n in nets:
                n.modulation[-1].weight.add_(0.1 * torch.sign(n.modulation[-1].weight.grad))
    obs = m.observables(t, x)
    assert not torch.allclose(obs["rho_eps1"], obs["rho_eps1e-08"])
    assert {id(p) for tk in m.tasks for p in tk.parameters()} == {id(p) for p in m.parameters()}


def test_film_of_a_constant_code_is_the_base_network():
    """FiLM with zero modulation equals the unconditioned network; a scale-and-shift
    code is exactly (1 + gamma) h + beta after every hidden stage."""
    for cls in (MLP, ResNet):
        base = cls(3, 2, width=8, depth=3)
        film = FiLM(width=4).wrap(base)
        x = torch.randn(6, 3)
        assert torch.equal(film(x), film.net(x[:, :-1]))
        with torch.no_grad():
            film.modulation[-1].bias.normal_()
        gb = film.modulation(x[:, -1:]).unflatten(-1, (film.n_stages, 2, 8))
        h = x[:, :-1]
        for i, stage in enumerate(film.net.stages()):
            h = (1 + gb[:, i, 0]) * stage(h) + gb[:, i, 1]
        assert torch.allclose(film(x), film.net.head(h))
        # one code per call: the broadcast modulation is the per-row one
        fast = FiLM(width=4).wrap(base, constant_code=True)
        fast.load_state_dict(film.state_dict())
        xc = torch.cat([x[:, :-1], torch.full((6, 1), 0.3)], dim=1)
        assert torch.allclose(fast(xc), film(xc), rtol=0, atol=1e-6)


@pytest.mark.parametrize("kind", ["embedding", "film"])
def test_eps_encoding_from_yaml(tmp_path, kind):
    over = dict(TINY, **{"solver.eps_encoding": {"kind": kind}, "solver.training.steps": 10})
    sol = sciml.solve(MULTI, overrides=over, out=tmp_path / "run", progress=False)
    assert np.isfinite(sol.metrics["worst_rel_l2_rho"])
    config = sciml.io.read_result(tmp_path / "run" / "result.h5")["attrs"]["config"]
    assert f"eps_encoding:\n    kind: {kind}" in config


@pytest.mark.parametrize("rule", ["hrgrad", "sum", "weighting=dwa"])
def test_multi_eps_solve_from_yaml(tmp_path, rule):
    over = dict(TINY)
    if rule.startswith("weighting="):
        over.update({"solver.training.aggregator": None, "solver.training.weighting": rule.split("=")[1]})
    else:
        over["solver.training.aggregator"] = rule
    sol = sciml.solve(MULTI, overrides=over, out=tmp_path / "run", progress=False)
    assert set(sol.fields) == {"rho_eps1", "rho_eps0.001", "rho_eps1e-08"}
    assert sol.fields["rho_eps1"].shape == (3, 100)
    m = sol.metrics
    assert m["worst_rel_l2_rho"] == max(m[f"rel_l2_rho_{k}"] for k in ("eps1", "eps0.001", "eps1e-08"))
    if rule == "hrgrad":
        # the update had a positive dot product with every task gradient at every logged step
        assert np.all(sol.history["monitor_min_cos_update"] > 0)
        # the rule's own counter: steps whose direction fell back (a running count)
        fb = sol.history["monitor_direction_fallbacks"]
        assert np.all(fb >= 0) and np.all(np.diff(fb) >= 0) and np.all(fb == np.round(fb))
    if rule == "weighting=dwa":       # the weighting's weights, by task name (they sum to K)
        w = np.stack([sol.history[f"monitor_weight_{t}"] for t in ("eps1", "eps0.001", "eps1e-08")])
        np.testing.assert_allclose(w.sum(0), 3.0, rtol=1e-6)
    if rule != "weighting=dwa":
        # per-task diagnostics: gradient norm, cosine with the update, relative rate
        h, tasks = sol.history, ("eps1", "eps0.001", "eps1e-08")
        cos = np.stack([h[f"monitor_cos_update_{t}"] for t in tasks])
        np.testing.assert_allclose(cos.min(0), h["monitor_min_cos_update"], rtol=1e-12)
        assert all(np.all(h[f"monitor_grad_norm_{t}"] > 0) for t in tasks)
        rates = np.stack([h[f"monitor_rate_{t}"] for t in tasks])
        assert np.all(np.sign(rates) == np.sign(cos))
    # the summary: one table of rho's error per task (rows eps1, eps0.001, eps1e-08, worst)
    text = sol.summary().splitlines()
    head = next(i for i, line in enumerate(text) if line.startswith("  relative L2 error of rho"))
    assert text[head + 1].split() == ["task", "t=0.02", "t=0.05", "t=0.1", "all", "times", "last", "20", "%"]
    assert [row.split()[0] for row in text[head + 2:head + 6]] == ["eps1", "eps0.001", "eps1e-08", "worst"]
    assert float(text[head + 5].split()[1]) == pytest.approx(m["worst_rel_l2_rho"], rel=1e-3)
    assert len(text) < 30 and not any("rel_l2_rho_eps" in line for line in text)
    # the worst task's mean over the last 20 % of training, from the monitored errors
    steps = sol.history["step"]
    late = steps >= 0.8 * steps.max()
    worst = np.max([sol.history[f"monitor_rel_l2_rho_{t}"] for t in ("eps1", "eps0.001", "eps1e-08")], axis=0)
    assert m["tail_worst_rel_l2_rho"] == pytest.approx(worst[late].mean(), rel=1e-12)
    assert m["tail_rel_l2_rho_eps1"] == pytest.approx(sol.history["monitor_rel_l2_rho_eps1"][late].mean(), rel=1e-12)
    out = sciml.io.read_result(tmp_path / "run" / "result.h5")
    assert "term_eps1/kinetic_r" in out["history"]
    # one figure per field with a panel per task (not one file per task), the task losses
    figures = {p.name for p in (tmp_path / "run" / "figures").iterdir()}
    assert "density.png" in figures and "training.png" in figures and not any("_eps" in f for f in figures)
    assert ("tasks.png" in figures) == (rule != "weighting=dwa")


def test_multi_eps_resume_is_exact(tmp_path):
    over = dict(TINY, **{"solver.training.aggregator": "hrgrad"})
    full = sciml.solve(MULTI, overrides=over, out=tmp_path / "full", progress=False)
    part = dict(over, **{"solver.training.steps": 10})
    sciml.solve(MULTI, overrides=part, out=tmp_path / "part", progress=False)
    resumed = sciml.solve(MULTI, overrides=over, out=tmp_path / "part", progress=False, resume=True)
    for k in full.fields:
        assert np.array_equal(full.fields[k], resumed.fields[k])


@pytest.mark.parametrize("override, path, words", [
    ("solver.training.aggregator=hrgard", "solver.training.aggregator", "did you mean 'hrgrad'"),
    ("problem.eps=[1e-3]", "problem.eps", "at least two"),
    ("problem.eps=[1e-3, 1e-3]", "problem.eps", "distinct"),
    ("solver.training.weighting=dwa", "solver.training", "not both"),
    ("solver.eps_encoding={kind: film, width: 0}", "solver.eps_encoding.width", ">= 1"),
    ("solver.eps_encoding={kind: films}", "solver.eps_encoding", "film"),
])
def test_bad_multitask_configs_exit_2(tmp_path, capsys, override, path, words):
    code = main(["solve", str(MULTI), "--set", override, "--out", str(tmp_path / "o"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and f"config error at {path}" in err and words in err, err
    assert not (tmp_path / "o").exists()


def test_aggregator_needs_a_list_of_eps(capsys):
    lt3 = ROOT / "problems" / "kinetic" / "lt_inflow_kn1e-3.yaml"
    assert main(["solve", str(lt3), "--set", "solver.training.aggregator=hrgrad", "--quiet"]) == 2
    assert "needs a multi-task problem" in capsys.readouterr().err
    assert main(["solve", str(lt3), "--set", "solver.eps_encoding={kind: film}", "--quiet"]) == 2
    assert "solver.eps_encoding" in capsys.readouterr().err
    assert main(["solve", str(MULTI), "--set", "reference.data=../../data/apnns/lt_inflow_kn1e-3.npz",
                 "--quiet"]) == 2
    assert "holds one eps" in capsys.readouterr().err


@pytest.mark.parametrize("entry", ["hrgrad_lt_methods", "hrgrad_bgk_methods"])
def test_method_comparison_entry_quick(tmp_path, entry):
    """The HRGrad comparison entries' quick runs: one run per method, the per-task table
    and figure, and HRGrad's update positive against every task at every logged step."""
    from sciml.validation import load_entry, reproduce

    report = reproduce(load_entry(entry), quick=True, out=tmp_path / "c", progress=False)
    assert report.passed, report.text()
    assert set(report.comparison) == {"sum", "hrgrad"}
    assert all(np.isfinite(v) for v in report.comparison.values())
    table = (tmp_path / "c" / "comparison.md").read_text()
    assert "| hrgrad |" in table and "eps0.001" in table
    assert (tmp_path / "c" / "figures" / "comparison.png").exists()
    if entry == "hrgrad_bgk_methods":     # rho u and E per eps too, each with its table and figure
        for field in ("rel_l2_energy", "rel_l2_momentum"):
            assert f"**{field}**" in table and f"worst_{field}" in table
            assert (tmp_path / "c" / "figures" / f"comparison_{field}.png").exists()
    hist = sciml.io.read_result(tmp_path / "c" / "hrgrad" / "result.h5")["history"]
    assert np.all(hist["monitor_min_cos_update"] > 0)


def test_comparison_built_over_several_calls(tmp_path, capsys):
    """``methods`` runs a subset; the table takes every finished run with the same
    configuration (``resume`` keeps them), a run with another configuration is not
    mixed in, and the report is incomplete (not passed) until every method has run."""
    from sciml.validation import load_entry, reproduce

    entry, out = load_entry("hrgrad_lt_methods"), tmp_path / "c"
    tiny = ["solver.training.steps=3", "solver.points={interior: 32, boundary: 16, initial: 16}",
            "output.nx=20", "problem.eps=[1.0, 1.0e-3]"]
    first = reproduce(entry, quick=True, out=out, overrides=tiny, methods=["sum"], progress=False)
    assert set(first.comparison) == {"sum"} and first.missing == ["hrgrad"] and not first.passed
    assert "not run yet: hrgrad" in first.text() and "--set solver.training.steps=3" in first.text()
    stamp = (out / "sum" / "result.h5").stat().st_mtime_ns
    second = reproduce(entry, quick=True, out=out, overrides=tiny, methods=["hrgrad"], resume=True,
                       progress=False)
    assert set(second.comparison) == {"sum", "hrgrad"} and not second.missing
    assert (out / "sum" / "result.h5").stat().st_mtime_ns == stamp          # reused, not rerun
    table = (out / "comparison.md").read_text()
    assert table.index("eps1 ") < table.index("eps0.001") and "| sum |" in table
    saved = json.loads((out / "validation.json").read_text())
    assert saved["overrides"][0] == "solver.training.steps=3" and saved["missing"] == []
    assert "torch" in saved["versions"] and saved["created"] and "git_revision" in saved    # provenance
    # everything computed again resumes nothing; another configuration is not mixed in
    again = reproduce(entry, quick=True, out=out, overrides=tiny[:-1] + ["problem.eps=[1.0, 1.0e-2]"],
                      methods=["hrgrad"], progress=False)
    assert set(again.comparison) == {"hrgrad"} and again.missing == ["sum"] and not again.passed
    # ... and is said to be there, with another configuration, not "not run yet"
    assert again.other_config == ["sum"] and again.not_run == []
    assert "not run yet" not in again.text() and "another configuration" in again.text()
    assert "another configuration, left out of the table" in (out / "comparison.md").read_text()
    assert json.loads((out / "validation.json").read_text())["other_configuration"] == ["sum"]
    with pytest.raises(ConfigError, match="not a method"):
        reproduce(entry, quick=True, out=out, methods=["pcgrad"], progress=False)
    # a resumed solve into a directory holding another configuration: exit 2, naming the key
    assert main(["solve", str(MULTI), *sum([["--set", o] for o in tiny], []), "--set", "solver.training.steps=4",
                 "--out", str(out / "sum"), "--resume", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "--resume" in err and "another configuration" in err and "solver.network.width" in err


def test_comparison_with_options_only_the_run_methods_take(tmp_path):
    """Rule options set for a comparison run (``--set ...aggregator_options``) with
    ``--methods``: a method not run now that does not take them is left out of the
    table with the reason; without ``--methods`` they are an error."""
    from sciml.validation import load_entry, reproduce

    entry, out = load_entry("hrgrad_lt_methods"), tmp_path / "c"
    tiny = ["solver.training.steps=2", "solver.points={interior: 32, boundary: 16, initial: 16}",
            "output.nx=20", "problem.eps=[1.0, 1.0e-3]", "solver.training.aggregator_options={alpha: 0.0}"]
    rep = reproduce(entry, quick=True, out=out, overrides=tiny, methods=["hrgrad"], progress=False)
    assert set(rep.comparison) == {"hrgrad"} and rep.missing == [] and not rep.passed
    assert list(rep.inapplicable) == ["sum"] and "alpha" in rep.inapplicable["sum"]
    assert "sum cannot run with these overrides" in rep.text()
    table = (out / "comparison.md").read_text()
    assert "sum cannot run with these overrides" in table and "alpha" in table
    with pytest.raises(ConfigError, match="alpha"):
        reproduce(entry, quick=True, out=tmp_path / "d", overrides=tiny, progress=False)


def test_comparison_over_seeds_with_a_variant(tmp_path, capsys):
    """``seeds``: every method runs once per seed in ``<method>/seed<k>``; the table and
    the check take the mean over the seeds, with each seed's values and ranks; a seed
    not run yet is reported missing. A variant (a rule with options) is a method of its
    own."""
    import dataclasses

    import yaml

    from sciml.validation import SEED_KEY, Variant, load_entry, reproduce

    entry = load_entry("hrgrad_lt_methods")
    entry = dataclasses.replace(entry, variants={"sum_unit": Variant(rule="sum", options={"length": "unit"})},
                                quick=dataclasses.replace(entry.quick, methods=["sum", "sum_unit", "hrgrad"]))
    out = tmp_path / "c"
    tiny = ["solver.training.steps=3", "solver.points={interior: 32, boundary: 16, initial: 16}",
            "output.nx=20", "problem.eps=[1.0, 1.0e-3]"]
    first = reproduce(entry, quick=True, out=out, overrides=tiny, methods=["sum", "sum_unit"], seeds=[0, 1],
                      progress=False)
    for name in ("sum", "sum_unit"):
        for seed in (0, 1):
            cfg = yaml.safe_load(sciml.io.read_result(out / name / f"seed{seed}" / "result.h5")["attrs"]["config"])
            assert cfg["solver"]["training"]["seed"] == seed
            assert cfg["solver"]["training"]["aggregator_options"] == {"length": "unit" if name == "sum_unit" else "sum"}
    assert not (out / "sum" / "result.h5").exists()
    per = first.per_seed["sum"]
    assert set(per) == {0, 1} and per[0] != per[1]                      # the seed changes the run
    assert first.comparison["sum"] == pytest.approx(np.mean(list(per.values())))
    assert first.per_seed["sum_unit"] != per                            # the variant's options took effect
    assert first.missing == ["hrgrad"] and not first.passed
    table = (out / "comparison.md").read_text()
    assert "mean over the finished runs of seeds 0, 1" in table and "per seed" in table and "| sum_unit |" in table
    assert "min – max" in table
    assert (out / "figures" / "comparison.png").exists()        # bars: the means, whiskers: min–max
    stamp = (out / "sum" / "seed1" / "result.h5").stat().st_mtime_ns
    second = reproduce(entry, quick=True, out=out, overrides=tiny, methods=["hrgrad"], seeds=[0, 1], resume=True,
                       progress=False)
    assert (out / "sum" / "seed1" / "result.h5").stat().st_mtime_ns == stamp    # reused, not rerun
    assert set(second.comparison) == {"sum", "sum_unit", "hrgrad"} and not second.missing
    assert "target best in" in second.text() and "mean over seeds 0, 1" in second.text()
    saved = json.loads((out / "validation.json").read_text())
    assert saved["seeds"] == [0, 1] and set(saved["per_seed"]["hrgrad"]) == {"0", "1"}
    h = saved["head_to_head"]["sum"]        # hrgrad against the sum on the seeds both ran
    assert h["seeds"] == [0, 1] and set(h) == {"seeds", "wins_final", "ratio_final", "wins_tail", "ratio_tail", "p_final"}
    assert h["wins_final"] == sum(second.per_seed["hrgrad"][k] < second.per_seed["sum"][k] for k in (0, 1))
    assert "hrgrad against each method, seed by seed" in (out / "comparison.md").read_text()
    assert "target lower than, in the seeds both ran: sum " in second.text()
    # a third seed: hrgrad runs it, the others miss it
    third = reproduce(entry, quick=True, out=out, overrides=tiny, methods=["hrgrad"], seeds=[0, 1, 2], resume=True,
                      progress=False)
    assert third.missing == ["sum/seed2", "sum_unit/seed2"] and not third.passed
    assert set(third.per_seed["hrgrad"]) == {0, 1, 2} and set(third.per_seed["sum"]) == {0, 1}
    # the table alone under another configuration: what the folders hold is named per seed
    fourth = reproduce(entry, quick=True, out=out, overrides=tiny[1:] + ["solver.training.steps=4"], methods=[],
                       seeds=[0, 1, 2], progress=False)
    assert not fourth.comparison and not fourth.passed
    assert fourth.other_config == ["sum/seed0", "sum/seed1", "sum_unit/seed0", "sum_unit/seed1", "hrgrad"]
    assert fourth.not_run == ["sum/seed2", "sum_unit/seed2"]
    # the seeds are the comparison's to set; a variant must not shadow a rule
    with pytest.raises(ConfigError, match="seeds"):
        reproduce(entry, quick=True, out=tmp_path / "d", overrides=tiny + [f"{SEED_KEY}=3"], seeds=[0],
                  progress=False)
    bad = dataclasses.replace(entry, variants={"sum": Variant(rule="hrgrad")})
    with pytest.raises(ConfigError, match="variants.sum"):
        reproduce(bad, quick=True, out=tmp_path / "d", overrides=tiny, seeds=[0], progress=False)
    bad = dataclasses.replace(entry, variants={"sum_unit": Variant(rule="summ")})
    with pytest.raises(ConfigError, match="variants.sum_unit.rule"):
        reproduce(bad, quick=True, out=tmp_path / "d", overrides=tiny, seeds=[0], progress=False)
    assert main(["reproduce", "hrgrad_lt_methods", "--quick", "--seeds", "0,x", "--out", str(tmp_path / "e")]) == 2
    assert "--seeds" in capsys.readouterr().err and not (tmp_path / "e").exists()


def test_bad_aggregator_options_exit_2_naming_the_key(tmp_path, capsys):
    assert main(["solve", str(MULTI), "--set", "solver.training.aggregator_options={beta: 1}",
                 "--out", str(tmp_path / "o"), "--quiet"]) == 2
    assert "solver.training.aggregator_options" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_saved_configuration_names_the_rule_with_its_defaults(tmp_path, capsys):
    """The resolved configuration writes the rule's options out, defaults included, and
    loads back to itself; a run saved with only the options given then (``{}``, as
    before a default changed) is a different configuration: a comparison does not take
    it and ``--resume`` refuses it."""
    import h5py
    import yaml

    from sciml.config import load_run
    from sciml.validation import finished_run

    run = load_run(MULTI, overrides={**TINY, "solver.training.steps": 2})
    options = run.config.solver.training.aggregator_options
    assert options == {"alpha": 0.5, "direction": "proportional", "gamma": 0.5, "length": "unit"}
    assert yaml.safe_load(run.yaml_text)["solver"]["training"]["aggregator_options"] == options
    assert load_run(yaml.safe_load(run.yaml_text)).yaml_text == run.yaml_text
    mgda = load_run(MULTI, overrides=["solver.training.aggregator=mgda",
                                      "solver.training.aggregator_options={max_iters: 7}"])
    assert mgda.config.solver.training.aggregator_options["max_iters"] == 7     # an integer stays one
    sciml.solve(MULTI, overrides={**TINY, "solver.training.steps": 2}, out=tmp_path / "r", progress=False)
    assert finished_run(tmp_path / "r", run.yaml_text) is not None
    old = yaml.safe_load(run.yaml_text)
    old["solver"]["training"]["aggregator_options"] = {}
    with h5py.File(tmp_path / "r" / "result.h5", "r+") as f:
        f.attrs["config"] = yaml.safe_dump(old, sort_keys=False)
    assert finished_run(tmp_path / "r", run.yaml_text) is None
    tiny = [f"{k}={v}" for k, v in {**TINY, "solver.training.steps": 3}.items()]
    assert main(["solve", str(MULTI), *sum([["--set", o] for o in tiny], []), "--out", str(tmp_path / "r"),
                 "--resume", "--quiet"]) == 2
    assert "solver.training.aggregator_options" in capsys.readouterr().err


def test_variant_from_the_command_line(tmp_path, capsys):
    """``--variant NAME=SPEC`` adds a rule with options to a comparison without editing
    the entry: it runs under its name, the table says what it is, the results record its
    options; a bad spec, a taken name or an unknown rule is exit 2 with nothing written."""
    import yaml

    out = tmp_path / "c"
    tiny = ["solver.training.steps=2", "solver.points={interior: 32, boundary: 16, initial: 16}",
            "output.nx=20", "problem.eps=[1.0, 1.0e-3]"]
    args = ["reproduce", "hrgrad_lt_methods", "--quick", *sum([["--set", o] for o in tiny], []), "--quiet"]
    assert main(args + ["--variant", "hr_a0={rule: hrgrad, options: {alpha: 0}}", "--methods", "hr_a0",
                        "--out", str(out)]) == 1                           # incomplete: sum, hrgrad not run
    saved = yaml.safe_load(sciml.io.read_result(out / "hr_a0" / "result.h5")["attrs"]["config"])
    assert saved["solver"]["training"]["aggregator"] == "hrgrad"
    assert saved["solver"]["training"]["aggregator_options"]["alpha"] == 0
    assert "hr_a0: hrgrad with options {'alpha': 0}" in (out / "comparison.md").read_text()
    assert json.loads((out / "validation.json").read_text())["variants"]["hr_a0"] == {"rule": "hrgrad",
                                                                                     "options": {"alpha": 0}}
    capsys.readouterr()
    for bad, words in [("hr_a0", "expected NAME="), ("sum={rule: hrgrad}", "name is taken"),
                       ("x={rule: hrgad}", "unknown rule 'hrgad'")]:
        assert main(args + ["--variant", bad, "--out", str(tmp_path / "bad")]) == 2
        assert words in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_solve_under_torchrun_two_cpu_ranks(tmp_path):
    """``torchrun --nproc_per_node=2 -m sciml solve``: one gloo group on the CPU, each
    rank its own points, rank 0 writes once and prints once; the multi-task rule sees
    the global task gradients (tests/test_mtl.py) and the checkpoint holds both ranks'
    random streams. ``sciml reproduce`` refuses torchrun (exit 2, nothing written)."""
    import os
    import subprocess
    import sys

    out = tmp_path / "run"
    sets = [f"--set=solver.training.{k}={v}" for k, v in (("steps", 10), ("log_every", 5), ("checkpoint_every", 5))]
    sets += ["--set=problem.eps=[1.0, 1.0e-3]", "--set=solver.network.width=16", "--set=solver.density_network.width=16",
             "--set=solver.points={interior: 32, boundary: 16, initial: 16}", "--set=solver.velocity_nodes=8",
             "--set=output.nx=20"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                        "-m", "sciml", "solve", str(MULTI), *sets, "--out", str(out), "--quiet"],
                       capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("trained by 2 processes") == 1 and r.stdout.count("wrote ") >= 1
    from sciml.io import read_result

    res = read_result(out / "result.h5")
    assert int(res["attrs"]["world_size"]) == 2 and np.isfinite(res["metrics"]["worst_rel_l2_rho"])
    ck = torch.load(out / "train" / "checkpoint.pt", weights_only=False)
    assert ck["world_size"] == 2 and len(ck["rng"]) == 2
    assert not torch.equal(ck["rng"][0]["generator"], ck["rng"][1]["generator"])
    # the same command as one process records world_size 1
    single = sciml.solve(MULTI, overrides=[s.removeprefix("--set=") for s in sets], progress=False)
    assert single.meta["world_size"] == 1
    r = subprocess.run([sys.executable, "-m", "sciml", "reproduce", "lt_evenodd_kn1e-3", "--quick",
                        "--out", str(tmp_path / "rep")], capture_output=True, text=True,
                       env=dict(env, WORLD_SIZE="2"), timeout=120)
    assert r.returncode == 2 and "one run, not a comparison" in r.stderr and not (tmp_path / "rep").exists()


def test_reproduce_under_torchrun_deals_the_runs_out(tmp_path):
    """``torchrun --nproc_per_node=2 -m sciml reproduce`` of a comparison: the four runs
    (two methods x two seeds) are dealt out to the two processes, each training alone
    (its runs record world_size 1), and rank 0 writes one table with all of them."""
    import os
    import subprocess
    import sys

    out = tmp_path / "cmp"
    sets = ["--set=solver.training.steps=10", "--set=solver.training.log_every=5", "--set=solver.network.width=16",
            "--set=solver.density_network.width=16", "--set=solver.velocity_nodes=8",
            "--set=solver.points={interior: 32, boundary: 16, initial: 16}"]
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                        "-m", "sciml", "reproduce", "hrgrad_lt_methods", "--quick", *sets, "--methods", "sum,hrgrad",
                        "--seeds", "0,1", "--out", str(out), "--quiet"],
                       capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"), timeout=600)
    assert r.returncode in (0, 1), r.stderr[-3000:]     # 1: the comparison is incomplete (two methods)
    dealt = sorted(line.split(": ", 1) for line in r.stdout.splitlines() if line.startswith("rank "))
    assert [d[0] for d in dealt] == ["rank 0/2", "rank 0/2", "rank 1/2", "rank 1/2"]
    assert sorted(d[1].split(" (")[0] for d in dealt) == ["hrgrad/seed0", "hrgrad/seed1", "sum/seed0", "sum/seed1"]
    assert all(d[1].endswith(" of its 2 runs)") for d in dealt)
    from sciml.io import read_result

    for m in ("sum", "hrgrad"):
        for s in (0, 1):
            assert int(read_result(out / m / f"seed{s}" / "result.h5")["attrs"]["world_size"]) == 1
    assert r.stdout.count("worst_rel_l2_rho") >= 1
    table = (out / "comparison.md").read_text()
    assert "| sum |" in table and "| hrgrad |" in table and "mean over the finished runs of seeds 0, 1" in table
    # each process trained alone: a run made on rank 1 is the same run made by one process
    from sciml.cli import main

    assert main(["reproduce", "hrgrad_lt_methods", "--quick", *sets, "--methods", "hrgrad", "--seeds", "1",
                 "--out", str(tmp_path / "one"), "--quiet"]) in (0, 1)
    a = read_result(out / "hrgrad" / "seed1" / "result.h5")
    b = read_result(tmp_path / "one" / "hrgrad" / "seed1" / "result.h5")
    np.testing.assert_array_equal(a["fields"]["rho_eps1"], b["fields"]["rho_eps1"])


def test_tail_metrics_average_the_last_fifth_of_training():
    from sciml.solvers.compare import tail_metrics

    steps = np.arange(0, 101, 10)                     # logs at 0, 10, ..., 100: the last 20 % are 80, 90, 100
    a = np.linspace(1.0, 0.0, 11)
    b = np.array([0.5] * 8 + [0.1, 0.9, 0.2])
    h = {"step": steps, "monitor_rel_l2_rho_eps1": a, "monitor_rel_l2_rho_eps0.001": b,
         "monitor_rel_l2_rho": a, "monitor_cos_update_eps1": a, "loss": a}
    t = tail_metrics(h)
    assert t["tail_rel_l2_rho_eps1"] == pytest.approx(np.mean(a[-3:]))
    assert t["tail_rel_l2_rho_eps0.001"] == pytest.approx(0.4)
    assert t["tail_worst_rel_l2_rho"] == pytest.approx(np.mean([max(a[8], 0.1), max(a[9], 0.9), max(a[10], 0.2)]))
    assert t["tail_rel_l2_rho"] == pytest.approx(np.mean(a[-3:]))           # a single-eps run
    assert set(t) == {"tail_rel_l2_rho_eps1", "tail_rel_l2_rho_eps0.001", "tail_worst_rel_l2_rho", "tail_rel_l2_rho"}
    assert tail_metrics({}) == {} and tail_metrics({"step": steps, "monitor_rel_l2_rho": a[:3]}) == {}


def test_finished_run_adds_tail_metrics_to_runs_saved_before_them(tmp_path):
    from sciml.io.results import write_result
    from sciml.validation import finished_run

    steps = np.arange(0, 101, 10)
    err = np.linspace(1.0, 0.0, 11)
    write_result(tmp_path / "result.h5", grid={"x": np.linspace(0, 1, 3)}, fields={"rho": np.zeros(3)},
                 dims={"rho": ("x",)}, metrics={"rel_l2_rho": 0.0}, reference={},
                 history={"step": steps, "monitor_rel_l2_rho": err}, attrs={"config": "a: 1\n"})
    m = finished_run(tmp_path, "a: 1\n")
    assert m["rel_l2_rho"] == 0.0 and m["tail_rel_l2_rho"] == pytest.approx(np.mean(err[-3:]))
    assert finished_run(tmp_path, "a: 2\n") is None


def test_summary_of_a_multi_task_run_without_per_time_errors():
    from sciml.solvers.base import Solution

    sol = Solution(solver="x", grid={}, fields={"rho_eps1": np.zeros(3), "rho_eps0.001": np.zeros(3)}, dims={},
                   metrics={"rel_l2_rho_eps1": 0.1, "rel_l2_rho_eps0.001": 0.2, "worst_rel_l2_rho": 0.2, "steps": 5})
    rows = [line.split() for line in sol.summary().splitlines()]
    assert ["task", "final"] in rows and ["steps:", "5"] in rows
    assert rows[-3:] == [["eps1", "1.000e-01"], ["eps0.001", "2.000e-01"], ["worst", "2.000e-01"]]


def test_head_to_head_counts_seeds_and_sign_test():
    """The target against each method over the seeds both ran: wins, ratio of means,
    one-sided sign test (3 of 3: 1/8; 2 of 3: 4/8)."""
    from sciml.validation import _head_to_head

    def run(final, tail):
        return {"worst_rel_l2_rho": final, "tail_worst_rel_l2_rho": tail}

    per_seed_runs = {"hr": {0: run(1.0, 1.0), 1: run(2.0, 2.0), 2: run(3.0, 1.0)},
                     "a": {0: run(2.0, 2.0), 1: run(3.0, 3.0), 2: run(4.0, 0.5)},
                     "b": {0: run(0.5, 2.0), 1: run(4.0, 3.0), 2: run(6.0, 2.0), 3: run(0.1, 0.1)},
                     "c": {5: run(1.0, 1.0)}}
    h = _head_to_head(per_seed_runs, "hr", "rel_l2_rho")
    assert set(h) == {"a", "b"}                                   # "c" shares no seed; the target is not its own rival
    assert h["a"]["wins_final"] == 3 and h["a"]["wins_tail"] == 2 and h["a"]["p_final"] == pytest.approx(1 / 8)
    assert h["a"]["ratio_final"] == pytest.approx(9 / 6)
    assert h["b"]["seeds"] == [0, 1, 2] and h["b"]["wins_final"] == 2 and h["b"]["p_final"] == pytest.approx(4 / 8)
    assert h["b"]["ratio_final"] == pytest.approx(10.5 / 6) and h["b"]["ratio_tail"] == pytest.approx(7 / 4)
