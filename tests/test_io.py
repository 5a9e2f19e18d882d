import json

import numpy as np
import pytest

from sciml.io import read_result, write_result


def test_round_trip_and_metadata(tmp_path):
    p = write_result(tmp_path / "r" / "result.h5", grid={"t": np.array([0.5, 1.0]), "x": np.linspace(0, 1, 5)},
                     fields={"rho": np.ones((2, 5))}, dims={"rho": ("t", "x")}, metrics={"rel_l2_rho": 1e-3, "n": 3},
                     reference={"rho": np.zeros((2, 5))}, history={"step": np.arange(3)},
                     attrs={"config": "a: 1\n", "seed": 7, "device": "cpu"})
    r = read_result(p)
    assert r["fields"]["rho"].shape == (2, 5) and r["grid"]["x"][-1] == 1.0
    assert r["metrics"]["rel_l2_rho"] == 1e-3 and r["attrs"]["seed"] == 7 and r["attrs"]["config"] == "a: 1\n"
    assert "torch" in json.loads(r["attrs"]["versions"]) and r["attrs"]["git_revision"]
    assert list(r["history"]["step"]) == [0, 1, 2]


def test_interrupted_write_leaves_nothing(tmp_path, monkeypatch):
    import h5py

    target = tmp_path / "result.h5"
    write_result(target, grid={"x": np.arange(3.0)}, fields={"rho": np.arange(3.0)})
    before = target.read_bytes()

    def boom(self, *a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(h5py.Group, "create_group", boom)
    with pytest.raises(KeyboardInterrupt):
        write_result(target, grid={"x": np.arange(4.0)}, fields={"rho": np.arange(4.0)})
    assert target.read_bytes() == before            # the old result is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.h5"]  # no temporary left
