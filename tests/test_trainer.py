import json
import logging
import math
import os

import numpy as np
import pytest
import torch

from sciml.train import (Callback, Constant, Cosine, StepDecay, TrainConfig, Trainer, TrainHistory,
                         TrainingDiverged)


def mlp(seed=0, width=16):
    import random

    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(1, width), torch.nn.Tanh(), torch.nn.Linear(width, width),
                               torch.nn.Tanh(), torch.nn.Linear(width, 1))


def sine_loss(net, n=64, noise=False, nan_at=None):
    """Fit sin(x) on [-pi, pi]; points resampled every step with the trainer's generator.

    ``noise``: add tiny terms drawn from the GLOBAL torch / numpy / random RNGs (their
    states must be checkpointed too). ``nan_at = (step, flag_dict)``: term "bc" is NaN
    at that step while ``flag_dict["armed"]`` (disarmed by the first firing)."""
    import random

    def loss(step, g):
        x = (torch.rand(n, 1, generator=g, device=g.device) * 2 - 1) * math.pi
        terms = {"fit": ((net(x) - torch.sin(x)) ** 2).mean(), "bc": net(torch.zeros(1, 1)).square().mean()}
        if noise:
            terms["noise"] = 1e-4 * torch.rand(()) * (1 + np.random.rand() + random.random()) * terms["fit"]
        if nan_at is not None and step == nan_at[0] and nan_at[1]["armed"]:
            nan_at[1]["armed"] = False
            terms["bc"] = terms["bc"] * float("nan")
        return terms

    return loss


def cfg(**kw):
    base = dict(steps=40, lr=1e-2, progress=False, log_every=1, checkpoint_every=10)
    base.update(kw)
    return TrainConfig(**base)


def params(model):
    return [p.detach().clone() for p in model.parameters()]


def assert_same_params(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert torch.equal(x, y)


def read_metrics(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


class Counter:
    """extra_state: something stateful updated inside loss_fn (e.g. adaptive weights)."""

    def __init__(self):
        self.calls = 0

    def state_dict(self):
        return {"calls": self.calls}

    def load_state_dict(self, d):
        self.calls = d["calls"]


# ---- convergence and schedules -------------------------------------------------------------
def test_fit_sine_loss_drops_100x():
    net = mlp()
    hist = Trainer(net, sine_loss(net, n=128), config=cfg(steps=400, schedule=Cosine(0.02), log_every=20,
                                                           checkpoint_every=0)).fit()
    assert hist.steps[0] == 0 and hist.steps[-1] == 399
    assert hist.loss[-1] < hist.loss[0] / 100
    assert set(hist.terms) == {"fit", "bc"} and set(hist.final_terms) == {"fit", "bc"}
    d = hist.to_dict()
    assert d["steps"] == hist.steps and d["terms"]["fit"] == hist.terms["fit"]
    assert math.isclose(d["loss"][-1], sum(d["final_terms"].values()), rel_tol=1e-6)


def test_schedule_factors_and_lambda_lr():
    assert StepDecay(every=10, gamma=0.5).factor(9, 100) == 1.0
    assert StepDecay(every=10, gamma=0.5).factor(25, 100) == 0.25
    c = Cosine(final_factor=0.1)
    assert c.factor(0, 100) == 1.0
    assert math.isclose(c.factor(50, 100), 0.55)
    assert math.isclose(c.factor(100, 100), 0.1) and math.isclose(c.factor(500, 100), 0.1)
    assert Constant().factor(7, 10) == 1.0
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=2.0)
    sched = StepDecay(every=3, gamma=0.1).scheduler(opt, 10)
    lrs = []
    for _ in range(7):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([2.0, 2.0, 2.0, 0.2, 0.2, 0.2, 0.02])
    with pytest.raises(ValueError):
        StepDecay(every=0, gamma=0.5)
    with pytest.raises(ValueError):
        TrainConfig(steps=10, log_every=0)


@pytest.mark.parametrize("schedule", [Constant(), StepDecay(every=7, gamma=0.5), Cosine(final_factor=0.1)])
def test_history_lr_follows_schedule(schedule):
    net = mlp()
    hist = Trainer(net, sine_loss(net), config=cfg(steps=20, schedule=schedule, checkpoint_every=0)).fit()
    assert hist.steps == list(range(20))
    assert hist.lr == pytest.approx([1e-2 * schedule.factor(i, 20) for i in range(20)], rel=1e-12)


# ---- checkpoints and exact resume ------------------------------------------------------------
class CrashAt(Callback):
    def __init__(self, step, exc=RuntimeError):
        self.step, self.exc = step, exc

    def on_step(self, trainer, step, stats):
        if step == self.step:
            raise self.exc("simulated crash")


def _run(tmp, *, steps=40, lbfgs=0, seed_model=0, resume=False, callbacks=(), loss_crash=None, **kw):
    net = mlp(seed_model)
    counter = Counter()
    inner = sine_loss(net, noise=True)

    def loss(step, g):
        counter.calls += 1
        terms = inner(step, g)
        if loss_crash is not None and step == loss_crash["step"] and loss_crash["armed"]:
            loss_crash["armed"] = False
            raise KeyboardInterrupt          # Ctrl-C in the middle of a step, after sampling
        terms["fit"] = terms["fit"] * (1 + 1e-3 * math.sin(counter.calls))   # depends on extra_state
        return terms

    tr = Trainer(net, loss, config=cfg(steps=steps, lbfgs_steps=lbfgs, schedule=Cosine(0.1), **kw), out_dir=tmp,
                 extra_state=counter, callbacks=callbacks)
    return net, tr, (lambda: tr.fit(resume=resume))


@pytest.mark.parametrize("mode", ["crash_after_checkpoint", "interrupt_inside_step"])
def test_resume_is_bitwise_exact(tmp_path, mode):
    net_a, tr_a, fit_a = _run(tmp_path / "a")
    hist_a = fit_a()

    out = tmp_path / "b"
    if mode == "crash_after_checkpoint":    # dies at step 24: the checkpoint of step 20 is what is left
        _, tr_b, fit_b = _run(out, callbacks=[CrashAt(24)])
        with pytest.raises(RuntimeError, match="simulated"):
            fit_b()
        assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == 20
        assert len(read_metrics(out / "metrics.jsonl")) == 25       # steps 0..24 were logged
    else:                                   # Ctrl-C inside step 17: saved at 17, samples undone
        _, tr_b, fit_b = _run(out, loss_crash={"step": 17, "armed": True})
        with pytest.raises(KeyboardInterrupt):
            fit_b()
        assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == 17

    net_c, tr_c, fit_c = _run(out, seed_model=123, resume=True)     # fresh model object, other init
    hist_c = fit_c()
    assert_same_params(params(net_a), params(net_c))
    assert hist_c.steps == hist_a.steps == list(range(40))
    assert hist_c.loss == hist_a.loss
    assert hist_c.terms == hist_a.terms and hist_c.lr == hist_a.lr
    assert tr_c.extra_state.calls == tr_a.extra_state.calls
    assert read_metrics(out / "metrics.jsonl") == hist_c.records()
    assert sorted(os.listdir(out)) == ["checkpoint.pt", "metrics.jsonl"]     # no temp files left


def test_lbfgs_finish_lowers_loss_and_resumes_exactly(tmp_path):
    net_a, tr_a, fit_a = _run(tmp_path / "a", steps=30, lbfgs=12, checkpoint_every=0)
    hist_a = fit_a()
    assert hist_a.phase.count("lbfgs") == 13 and hist_a.steps[-1] == 42
    i0 = hist_a.steps.index(30)                  # first L-BFGS record: the Adam result on the fixed batch
    assert hist_a.phase[i0] == "lbfgs" and hist_a.lr[i0] == 1.0
    assert hist_a.loss[-1] < 0.5 * hist_a.loss[i0]
    assert tr_a.phase == "done"

    out = tmp_path / "b"
    _, _, fit_b = _run(out, steps=30, lbfgs=12, checkpoint_every=0, callbacks=[CrashAt(34, KeyboardInterrupt)])
    with pytest.raises(KeyboardInterrupt):
        fit_b()
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert (state["step"], state["lbfgs_step"]) == (30, 5) and state["lbfgs"] is not None
    net_c, _, fit_c = _run(out, steps=30, lbfgs=12, checkpoint_every=0, seed_model=7, resume=True)
    hist_c = fit_c()
    assert_same_params(params(net_a), params(net_c))
    assert hist_c.loss == hist_a.loss and hist_c.steps == hist_a.steps

    # resuming a finished run does nothing
    net_d, _, fit_d = _run(out, steps=30, lbfgs=12, checkpoint_every=0, seed_model=9, resume=True)
    hist_d = fit_d()
    assert_same_params(params(net_a), params(net_d))
    assert hist_d.loss == hist_a.loss


def test_metrics_jsonl_matches_history_and_callback_fields(tmp_path):
    class Extra(Callback):
        def on_log(self, trainer, record):
            return {"double_step": 2 * record["step"]}

    net = mlp()
    tr = Trainer(net, sine_loss(net), config=cfg(steps=23, log_every=5, checkpoint_every=7), out_dir=tmp_path,
                 callbacks=[Extra()])
    hist = tr.fit()
    lines = read_metrics(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in lines] == hist.steps == [0, 5, 10, 15, 20, 22]
    assert lines == hist.records()
    for r, loss, t in zip(lines, hist.loss, hist.time):
        assert set(r) >= {"step", "time", "lr", "loss", "terms", "double_step"}
        assert r["loss"] == loss and r["time"] == t and r["double_step"] == 2 * r["step"]
        assert math.isclose(r["loss"], sum(r["terms"].values()), rel_tol=1e-6)
    assert hist.extra["double_step"] == [2 * s for s in hist.steps]
    assert sorted(os.listdir(tmp_path)) == ["checkpoint.pt", "metrics.jsonl"]
    ck = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert ck["step"] == 23 and TrainHistory.from_dict(ck["history"]).records() == lines
    assert set(ck) >= {"model", "optimizer", "scheduler", "rng", "lr_scale", "history", "extra_state"}


def test_custom_backward_strategy():
    seen = []

    def half_sum(terms, params):
        seen.append(sorted(terms))
        total = 0.5 * sum(terms.values())
        total.backward()
        return total

    net = mlp()
    hist = Trainer(net, sine_loss(net), config=cfg(steps=5, checkpoint_every=0), backward=half_sum).fit()
    assert seen == [["bc", "fit"]] * 5
    assert hist.loss[0] == pytest.approx(0.5 * (hist.terms["fit"][0] + hist.terms["bc"][0]))


# ---- NaN guard --------------------------------------------------------------------------------
@pytest.mark.parametrize("with_dir", [True, False])
def test_nan_guard_rolls_back_and_lowers_lr(tmp_path, caplog, with_dir):
    net = mlp()
    flag = {"armed": True}
    rollbacks = []

    class Seen(Callback):
        def on_rollback(self, trainer, event):
            rollbacks.append(event)

    out = tmp_path if with_dir else None
    tr = Trainer(net, sine_loss(net, nan_at=(12, flag)), config=cfg(steps=30, checkpoint_every=5 if with_dir else 0,
                                                                      log_every=1 if with_dir else 5),
                 out_dir=out, callbacks=[Seen()])
    with caplog.at_level(logging.WARNING, logger="sciml.train"):
        hist = tr.fit()
    assert "'bc'" in caplog.text and "step 12" in caplog.text
    assert len(rollbacks) == 1 and rollbacks[0]["terms"] == ["bc"] and rollbacks[0]["step"] == 12
    assert rollbacks[0]["to_step"] == 10
    assert hist.events[0]["terms"] == ["bc"]
    assert tr.lr_scale == 0.5 and tr.retries == 1
    if with_dir:
        assert hist.steps == list(range(30))            # steps 10..12 were redone once
        assert hist.lr[:10] == [1e-2] * 10 and hist.lr[10:] == [5e-3] * 20
        assert read_metrics(tmp_path / "metrics.jsonl") == hist.records()
        assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["lr_scale"] == 0.5
    else:
        assert hist.steps == [0, 5, 10, 15, 20, 25, 29]
        assert hist.lr[2:] == [5e-3] * 5
    assert all(math.isfinite(v) for v in hist.loss)
    assert all(torch.isfinite(p).all() for p in net.parameters())


def test_nan_guard_in_lbfgs_phase_lowers_only_the_lbfgs_lr():
    net = mlp()
    state = {"nan": False, "done": False}

    class Arm(Callback):          # the loss turns NaN after L-BFGS step 22 until the rollback
        def on_step(self, trainer, step, stats):
            if step == 22 and not state["done"]:
                state["nan"] = True

        def on_rollback(self, trainer, event):
            state["nan"], state["done"] = False, True

    inner = sine_loss(net)

    def loss(step, g):
        terms = inner(step, g)
        if state["nan"]:
            terms["fit"] = terms["fit"] * float("nan")
        return terms

    tr = Trainer(net, loss, config=cfg(steps=20, lbfgs_steps=6, checkpoint_every=0), callbacks=[Arm()])
    hist = tr.fit()
    assert [(e["step"], e["phase"], e["terms"], e["to_step"]) for e in hist.events] == [(23, "lbfgs", ["fit"], 23)]
    assert tr.lr_scale == 1.0 and tr.lbfgs_lr_scale == 0.5
    assert hist.steps == list(range(27))
    assert hist.lr[20:] == [1.0] * 3 + [0.5] * 4 and hist.lr[:20] == [1e-2] * 20
    assert all(math.isfinite(v) for v in hist.loss)


def test_nan_guard_gives_up_naming_the_term():
    net = mlp()

    def loss(step, g):
        x = torch.rand(8, 1, generator=g)
        return {"fit": net(x).square().mean(), "bc": net(x).mean() * float("nan")}

    tr = Trainer(net, loss, config=cfg(steps=10, max_retries=3))
    with pytest.raises(TrainingDiverged, match=r"'bc'.*step 0") as info:
        tr.fit()
    assert info.value.terms == ["bc"] and info.value.step == 0
    assert tr.retries == 3 and tr.lr_scale == 0.5 ** 3


def test_nan_gradient_is_caught():
    net = mlp()

    def loss(step, g):
        x = torch.rand(8, 1, generator=g)
        out = {"fit": net(x).square().mean()}
        if step >= 3:   # finite value, infinite gradient
            out["root"] = torch.sqrt((net[0].bias * 0).abs()).sum()
        return out

    with pytest.raises(TrainingDiverged, match="gradient norm.*step 3"):
        Trainer(net, loss, config=cfg(steps=10, max_retries=1)).fit()


# ---- torch.distributed ----------------------------------------------------------------------
def _ddp_worker(rank, world, init_file, out_dir, result_dir):
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        net = mlp(seed=rank)              # different initialisations: rank 0's is broadcast
        hist = Trainer(net, sine_loss(net), config=cfg(steps=15, checkpoint_every=5, lbfgs_steps=3),
                       out_dir=out_dir).fit()
        torch.save({"params": params(net), "loss": hist.loss}, os.path.join(result_dir, f"rank{rank}.pt"))
        dist.barrier()      # gloo can abort at teardown if one rank destroys the group early
    finally:
        dist.destroy_process_group()


def test_distributed_gloo_two_ranks(tmp_path):
    import torch.multiprocessing as mp

    out, res = tmp_path / "out", tmp_path / "res"
    res.mkdir()
    try:
        mp.spawn(_ddp_worker, args=(2, str(tmp_path / "init"), str(out), str(res)), nprocs=2, join=True)
    except mp.ProcessExitedException:
        # a rare SIGABRT inside gloo's teardown (after the results are written) is not ours
        if not ((res / "rank0.pt").exists() and (res / "rank1.pt").exists()):
            raise
    r0 = torch.load(res / "rank0.pt", weights_only=True)
    r1 = torch.load(res / "rank1.pt", weights_only=True)
    assert_same_params(r0["params"], r1["params"])
    assert r0["loss"] == r1["loss"]                       # averaged over ranks
    assert len(read_metrics(out / "metrics.jsonl")) == len(r0["loss"])
    ck = torch.load(out / "checkpoint.pt", weights_only=True)
    assert len(ck["rng"]) == 2 and not torch.equal(ck["rng"][0]["generator"], ck["rng"][1]["generator"])
    assert sorted(os.listdir(out)) == ["checkpoint.pt", "metrics.jsonl"]


def test_cosine_warmup_and_adamw():
    from sciml.train import Cosine, TrainConfig, Trainer
    sched = Cosine(final_factor=0.01, warmup=10)
    assert sched.factor(0, 110) == pytest.approx(0.1) and sched.factor(5, 110) == pytest.approx(0.55)
    assert sched.factor(10, 110) == pytest.approx(1.0) and sched.factor(110, 110) == pytest.approx(0.01)
    assert sched.factor(60, 110) == pytest.approx(0.505)
    with pytest.raises(ValueError, match="warmup"):
        Cosine(warmup=-1)
    model = torch.nn.Linear(2, 1)
    tr = Trainer(model, lambda step, g: {"l": model(torch.ones(1, 2)).pow(2).sum()},
                 config=TrainConfig(steps=1, weight_decay=1e-2, progress=False))
    assert isinstance(tr.optimizer, torch.optim.AdamW) and tr.optimizer.defaults["weight_decay"] == 1e-2
    with pytest.raises(ValueError, match="weight_decay"):
        TrainConfig(steps=1, weight_decay=-1.0)


def test_resume_into_another_model_is_a_clear_error(tmp_path):
    from sciml.train import CheckpointMismatch

    net = mlp(width=16)
    Trainer(net, sine_loss(net), config=cfg(steps=5), out_dir=tmp_path).fit()
    other = mlp(width=8)
    with pytest.raises(CheckpointMismatch, match="another model"):
        Trainer(other, sine_loss(other), config=cfg(steps=10), out_dir=tmp_path).fit(resume=True)


def test_step_rms_is_adams_step_over_lr(tmp_path):
    """``step_rms`` = RMS of the parameter update / lr: exactly 1 at Adam's first step
    (bias-corrected m / sqrt(v) = sign(g) per parameter); after a gradient decades
    smaller than the first ones it is far below 1 (the second moment remembers)."""
    net = mlp()
    scale = {"k": 1.0}

    def loss(step, g):
        x = (torch.rand(64, 1, generator=g) * 2 - 1) * math.pi
        return {"fit": scale["k"] * ((net(x) - torch.sin(x)) ** 2).mean()}

    class Shrink(Callback):
        def on_step(self, trainer, step, stats):
            scale["k"] = 1e-3 if step >= 4 else 1.0

    hist = Trainer(net, loss, config=cfg(steps=60, log_every=1, checkpoint_every=0, lr=1e-3),
                   callbacks=[Shrink()], out_dir=tmp_path).fit()
    rms = hist.extra["step_rms"]
    assert abs(rms[0] - 1.0) < 1e-3
    assert 0.3 < rms[3] <= 1.0 + 1e-6 and rms[-1] < 0.05
    rec = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    assert rec["step_rms"] == rms[-1]
