"""sciml.config.schema: dicts -> typed frozen dataclasses, errors with key paths,
round trips, --set overrides and the help listing."""
from __future__ import annotations

import pickle
from dataclasses import FrozenInstanceError, dataclass, field
from typing import Any, Literal, Optional, Union

import pytest
import yaml

from sciml.config.errors import ConfigError
from sciml.config.schema import apply_overrides, build, describe, option, to_dict


def _even(n):
    return None if n % 2 == 0 else f"must be even, got {n}"


@dataclass(frozen=True)
class Net:
    arch: Literal["mlp", "resnet"] = option("mlp", doc="network architecture")
    width: int = option(64, doc="hidden units", min=1, max=4096)


@dataclass(frozen=True)
class Step:
    kind: Literal["step"]
    every: int = option(100, doc="steps between decays", min=1)
    gamma: float = option(0.5, doc="decay factor", min=0.0, max=1.0, min_exclusive=True)


@dataclass(frozen=True)
class Constant:
    kind: Literal["constant"]


@dataclass(frozen=True)
class Training:
    steps: int = option(doc="Adam steps", min=1)           # required, after nothing: keyword-only
    lr: float = option(1e-3, doc="learning rate", min=0.0, min_exclusive=True)
    schedule: Union[Step, Constant] = option(Constant("constant"), doc="lr schedule")
    clip: Optional[float] = option(None, doc="gradient clip", min=0.0, min_exclusive=True)
    device: str = option("cpu", choices=("cpu", "cuda"), doc="device")


@dataclass(frozen=True)
class Points:
    times: list[float] = option(field(default_factory=list), doc="output times", min=0.0)
    nodes: int = option(8, doc="velocity nodes", check=_even)


@dataclass(frozen=True)
class Run:
    name: str = option(doc="run name")
    interval: tuple[float, float] = option((0.0, 1.0), doc="space interval",
                                           check=lambda v: None if v[1] > v[0] else f"need hi > lo, got {list(v)}")
    training: Training = option(doc="optimisation")
    net: Net = option(Net(), doc="network")
    extra_net: Optional[Net] = option(None, doc="second network")
    points: Points = option(Points(), doc="points")
    weights: dict[str, float] = option({}, doc="loss weights")
    verbose: bool = option(False, doc="chatty")
    notes: dict[str, Any] = option(field(default_factory=dict), doc="anything")


@dataclass(frozen=True)
class Checked:
    lo: float = 0.0
    hi: float = 1.0

    def __post_init__(self):
        if self.hi <= self.lo:
            raise ValueError(f"hi must exceed lo, got lo={self.lo}, hi={self.hi}")


def minimal(**extra):
    data = {"name": "demo", "training": {"steps": 10}}
    data.update(extra)
    return data


def error_of(cls, data, **kw) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        build(cls, data, **kw)
    return info.value


# ---- building --------------------------------------------------------------------------------
def test_build_full_nested_mapping_with_yaml_quirks():
    text = """
    name: demo
    interval: [-1, 2]
    training:
      steps: 1e4          # YAML 1.1: a string; integral -> int
      lr: 1e-3            # YAML 1.1: a string -> float
      schedule: {kind: step, every: 50, gamma: 0.1}
      clip: 1
    net: {arch: resnet, width: 32}
    extra_net: {}
    points: {times: [0.1, 1, "2e-1"], nodes: 4}
    weights: {pde: 1, bc: 10.5}
    verbose: true
    notes: {anything: [1, {a: b}]}
    """
    data = yaml.safe_load(text)
    assert data["training"]["lr"] == "1e-3"  # the quirk this handles
    run = build(Run, data)
    assert run.name == "demo" and run.interval == (-1.0, 2.0) and isinstance(run.interval, tuple)
    assert run.training.steps == 10000 and type(run.training.steps) is int
    assert run.training.lr == 1e-3 and type(run.training.lr) is float
    assert run.training.schedule == Step("step", every=50, gamma=0.1)
    assert run.training.clip == 1.0 and type(run.training.clip) is float
    assert run.net == Net("resnet", 32) and run.extra_net == Net()
    assert run.points.times == [0.1, 1.0, 0.2] and run.points.nodes == 4
    assert run.weights == {"pde": 1.0, "bc": 10.5}
    assert run.verbose is True and run.notes == {"anything": [1, {"a": "b"}]}
    with pytest.raises(FrozenInstanceError):
        run.name = "other"


def test_defaults_and_empty_sections():
    run = build(Run, minimal(net=None, points=None))
    assert run.net == Net() and run.points == Points() and run.extra_net is None
    assert run.training == Training(steps=10) and run.training.schedule == Constant("constant")
    assert run.weights == {} and run.points.times == []
    # mutable defaults are not shared between instances
    assert build(Run, minimal()).weights is not build(Run, minimal()).weights


def test_strings_accept_numbers_and_optional_accepts_null():
    run = build(Run, minimal(name=2024, training={"steps": 1, "clip": None}))
    assert run.name == "2024" and run.training.clip is None


def test_missing_required_key_names_it_and_its_doc():
    err = error_of(Run, {"name": "x"})
    assert err.path == "training" and "missing required key 'training'" in err.message
    assert "optimisation" in err.message
    err = error_of(Run, minimal(training={"lr": 0.1}))
    assert err.path == "training.steps" and "steps" in str(err)


def test_unknown_key_suggests_and_lists_allowed():
    err = error_of(Run, minimal(training={"stepz": 3}))
    assert err.path == "training.stepz"
    assert "unknown key 'stepz'" in err.message and "did you mean 'steps'" in err.message
    assert "allowed keys: steps, lr, schedule, clip, device" in err.message
    err = error_of(Run, minimal(zzzzzz=1))
    assert err.path == "zzzzzz" and "did you mean" not in err.message and "name, interval" in err.message


@pytest.mark.parametrize("data, path, pieces", [
    (minimal(training={"steps": "abc"}), "training.steps", ["expected an integer", "'abc'"]),
    (minimal(training={"steps": 2.5}), "training.steps", ["expected an integer", "2.5"]),
    (minimal(training={"steps": True}), "training.steps", ["expected an integer", "True"]),
    (minimal(training={"steps": 1, "lr": True}), "training.lr", ["expected a number", "True"]),
    (minimal(training={"steps": 1, "lr": "fast"}), "training.lr", ["expected a number", "'fast'"]),
    (minimal(training={"steps": 1, "lr": [1]}), "training.lr", ["expected a number", "[1]"]),
    (minimal(training={"steps": 1, "lr": float("nan")}), "training.lr", ["expected a number", "nan"]),
    (minimal(verbose="maybe"), "verbose", ["expected true or false", "'maybe'"]),
    (minimal(verbose=1), "verbose", ["expected true or false"]),
    (minimal(name=["a"]), "name", ["expected a string", "['a']"]),
    (minimal(points={"times": 0.5}), "points.times", ["expected a list", "0.5"]),
    (minimal(points={"times": [0.1, "x"]}), "points.times[1]", ["expected a number", "'x'"]),
    (minimal(interval=[0, 1, 2]), "interval", ["expected a list of 2 items", "[float, float]"]),
    (minimal(weights=[1, 2]), "weights", ["expected a mapping"]),
    (minimal(weights={"pde": "heavy"}), "weights.pde", ["expected a number"]),
    (minimal(net={"arch": "mpl"}), "net.arch", ["expected one of 'mlp', 'resnet'", "did you mean 'mlp'"]),
    (minimal(net=5), "net", ["expected a mapping with keys arch, width", "5"]),
    (minimal(extra_net=[1]), "extra_net", ["expected a mapping"]),
    ("not a mapping", "", ["expected a mapping"]),
])
def test_wrong_types_name_path_expected_and_got(data, path, pieces):
    err = error_of(Run, data)
    assert err.path == path
    for piece in pieces:
        assert piece in err.message, (piece, err.message)


@pytest.mark.parametrize("data, path, pieces", [
    (minimal(training={"steps": -5}), "training.steps", ["expected an integer >= 1, got -5"]),
    (minimal(training={"steps": 0}), "training.steps", [">= 1", "got 0"]),
    (minimal(training={"steps": 1, "lr": 0}), "training.lr", ["expected a number > 0.0, got 0.0"]),
    (minimal(training={"steps": 1, "schedule": {"kind": "step", "gamma": 1.5}}), "training.schedule.gamma",
     ["> 0.0 and <= 1.0", "got 1.5"]),
    (minimal(net={"width": 5000}), "net.width", ["<= 4096", "got 5000"]),
    (minimal(points={"times": [0.5, -1]}), "points.times[1]", [">= 0.0", "got -1.0"]),
    (minimal(points={"nodes": 3}), "points.nodes", ["must be even, got 3"]),
    (minimal(interval=[1, 0]), "interval", ["need hi > lo, got [1.0, 0.0]"]),
    (minimal(training={"steps": 1, "device": "tpu"}), "training.device", ["expected one of 'cpu', 'cuda'", "'tpu'"]),
])
def test_out_of_range_and_checks_name_the_bound(data, path, pieces):
    err = error_of(Run, data)
    assert err.path == path
    for piece in pieces:
        assert piece in err.message, (piece, err.message)


def test_bounds_do_not_apply_to_null():
    assert build(Run, minimal(training={"steps": 1, "clip": None})).training.clip is None
    assert error_of(Run, minimal(training={"steps": 1, "clip": 0})).path == "training.clip"


def test_discriminated_union_by_kind():
    sched = {"steps": 1, "schedule": {"kind": "constant"}}
    assert build(Run, minimal(training=sched)).training.schedule == Constant("constant")
    err = error_of(Run, minimal(training={"steps": 1, "schedule": {"every": 3}}))
    assert err.path == "training.schedule.kind" and "missing" in err.message
    assert "allowed kinds: step, constant" in err.message
    err = error_of(Run, minimal(training={"steps": 1, "schedule": {"kind": "stpe"}}))
    assert err.path == "training.schedule.kind"
    assert "unknown kind 'stpe'" in err.message and "did you mean 'step'" in err.message and "step, constant" in err.message
    err = error_of(Run, minimal(training={"steps": 1, "schedule": {"kind": "constant", "every": 3}}))
    assert err.path == "training.schedule.every" and "allowed keys: kind" in err.message
    err = error_of(Run, minimal(training={"steps": 1, "schedule": "step"}))
    assert err.path == "training.schedule" and "'kind'" in err.message
    # build also takes a union directly
    assert build(Union[Step, Constant], {"kind": "step"}) == Step("step")


def test_post_init_value_error_becomes_config_error():
    assert build(Checked, {"hi": 2}) == Checked(0.0, 2.0)
    err = error_of(Checked, {"lo": 3}, path="domain")
    assert err.path == "domain" and "hi must exceed lo" in err.message


def test_path_prefix_and_source_in_message():
    err = error_of(Training, {"steps": -5}, path="solver.training", source="problems/x.yaml")
    assert err.path == "solver.training.steps" and err.source == "problems/x.yaml"
    assert str(err) == ("config error at solver.training.steps: expected an integer >= 1, got -5 "
                        "(in problems/x.yaml)")


def test_config_error_format_and_pickle():
    assert str(ConfigError("", "bad file")) == "config error: bad file"
    assert str(ConfigError("a.b[2]", "bad", source="f.yaml")) == "config error at a.b[2]: bad (in f.yaml)"
    err = pickle.loads(pickle.dumps(ConfigError("a", "m", source="s")))
    assert (err.path, err.message, err.source) == ("a", "m", "s")
    assert ConfigError("a", "m", source="s").with_source("t").source == "s"
    assert ConfigError("a", "m").with_source("t").source == "t"
    assert isinstance(ConfigError("a", "m"), Exception)


def test_required_option_fields_are_keyword_only():
    # a required option after defaulted fields does not break the dataclass
    @dataclass(frozen=True)
    class Late:
        a: int = option(1)
        b: int = option(doc="required")
    assert Late(b=2) == Late(1, b=2)
    assert build(Late, {"b": 3}) == Late(b=3)


# ---- round trip ----------------------------------------------------------------------------
def test_to_dict_round_trips_through_build_and_yaml():
    run = build(Run, yaml.safe_load("""
        name: demo
        interval: [-1, 2]
        training: {steps: 7, lr: 1e-8, schedule: {kind: step, every: 3}, clip: 0.5}
        extra_net: {width: 3}
        points: {times: [0.25, 0.5]}
        weights: {pde: 2}
        notes: {k: [1, 2]}
    """))
    d = to_dict(run)
    assert d["interval"] == [-1.0, 2.0] and d["training"]["schedule"] == {"kind": "step", "every": 3, "gamma": 0.5}
    assert d["training"]["lr"] == 1e-8 and d["extra_net"] == {"arch": "mlp", "width": 3}
    assert build(Run, d) == run
    assert build(Run, yaml.safe_load(yaml.safe_dump(d))) == run
    assert to_dict(build(Run, minimal())) == to_dict(build(Run, to_dict(build(Run, minimal()))))


# ---- overrides -----------------------------------------------------------------------------
def test_overrides_nested_new_keys_lists_and_floats():
    base = minimal(training={"steps": 10, "schedule": {"kind": "step"}})
    out = apply_overrides(base, [
        "training.steps=100",
        "training.lr=1e-8",                 # YAML 1.1 string -> float
        "training.schedule.gamma = 0.25",   # spaces around '='
        "net.width=32",                     # new intermediate mapping
        "points.times=[0.1, 2e-1, 1]",      # list with a float-like string
        "weights={pde: 1e3}",
        "verbose=true",
        "name=my run",
        "extra_net=null",
        "notes={a: '1e-3'}",
        "quoted='2e-3'",
    ])
    assert out["training"]["steps"] == 100 and type(out["training"]["steps"]) is int
    assert out["training"]["lr"] == 1e-8 and type(out["training"]["lr"]) is float
    assert out["training"]["schedule"] == {"kind": "step", "gamma": 0.25}
    assert out["net"] == {"width": 32} and out["points"]["times"] == [0.1, 0.2, 1]
    assert out["weights"] == {"pde": 1000.0} and out["verbose"] is True
    assert out["name"] == "my run" and out["extra_net"] is None
    assert out["notes"] == {"a": 0.001} and out.pop("quoted") == "2e-3"
    assert base == minimal(training={"steps": 10, "schedule": {"kind": "step"}})  # input untouched
    run = build(Run, out)
    assert run.training.lr == 1e-8 and run.net.width == 32 and run.training.schedule.gamma == 0.25


def test_override_list_item_and_value_with_equals():
    out = apply_overrides({"points": {"times": [1, 2, 3]}}, ["points.times[1]=5", "points.times[-1]=7",
                                                            "expr=where(x == 0, 1, 2)"])
    assert out["points"]["times"] == [1, 5, 7] and out["expr"] == "where(x == 0, 1, 2)"


def test_override_creates_and_replaces_null_sections():
    assert apply_overrides({"a": None}, ["a.b.c=1"]) == {"a": {"b": {"c": 1}}}
    assert apply_overrides({}, ["a="]) == {"a": None}


@pytest.mark.parametrize("override, path, piece", [
    ("training.steps", "training.steps", "expected KEY=VALUE"),
    ("=5", "", "empty key"),
    ("a..b=1", "a..b", "malformed key"),
    ("name.first=x", "name", "not a mapping"),
    ("points.times[5]=1", "points.times", "out of range"),
    ("name[0]=1", "name", "not a list"),
    ("training.steps=[1, 2", "training.steps", "cannot read the value"),
])
def test_malformed_overrides(override, path, piece):
    data = minimal(points={"times": [1.0]})
    with pytest.raises(ConfigError) as info:
        apply_overrides(data, [override])
    assert info.value.path == path and piece in info.value.message, str(info.value)


# ---- help ----------------------------------------------------------------------------------
def test_describe_lists_keys_types_defaults_and_docs():
    text = describe(Run)
    lines = text.splitlines()
    assert "name: str  [required]  -- run name" in lines
    assert "interval: [float, float]  [default: [0.0, 1.0]]  -- space interval" in lines
    assert "  steps: int, >= 1  [required]  -- Adam steps" in lines
    assert "  lr: float, > 0.0  [default: 0.001]  -- learning rate" in lines
    assert "  schedule: one of kind: step | constant  [default kind: constant]  -- lr schedule" in lines
    assert "    kind: step" in lines and "      gamma: float, > 0.0 and <= 1.0  [default: 0.5]  -- decay factor" in lines
    assert "  arch: mlp | resnet  [default: mlp]  -- network architecture" in lines
    assert "extra_net: section | null  [default: null]  -- second network" in lines
    assert "weights: mapping[str, float]  [default: {}]  -- loss weights" in lines
    assert "verbose: bool  [default: false]  -- chatty" in lines
    assert describe(Union[Step, Constant]).splitlines()[:2] == ["kind: step", "  every: int, >= 1  [default: 100]  -- steps between decays"]


def test_yaml_dates_are_accepted_as_strings():
    """YAML reads an unquoted 2026-11-23 as a date; a string field takes its ISO form."""
    import datetime
    from dataclasses import dataclass

    from sciml.config.schema import build, option

    @dataclass(frozen=True)
    class WithDate:
        date: str = option("", doc="a date")

    assert build(WithDate, {"date": datetime.date(2026, 11, 23)}).date == "2026-11-23"
