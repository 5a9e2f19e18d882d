"""The figures draw what they are given, including the awkward cases (a missing
value, one method, many curves), and say so in the image's size and content."""
import numpy as np
from matplotlib.image import imread

from sciml.plot import comparison_chart, profile_panels, training_curves


def test_comparison_chart_sorts_by_the_worst_task_and_survives_gaps(tmp_path):
    tasks = ["eps1", "eps0.001", "eps1e-08"]
    values = {"sum": {"eps1": 0.2, "eps0.001": 0.1, "eps1e-08": 0.3},
              "hrgrad": {"eps1": 0.1, "eps0.001": float("nan"), "eps1e-08": 0.05},
              "broken": {"eps1": float("nan"), "eps0.001": float("nan"), "eps1e-08": float("nan")}}
    worst = {"sum": 0.3, "hrgrad": 0.1, "broken": float("nan")}
    path = comparison_chart(tmp_path / "c.png", tasks, values, worst, ranges={"sum": (0.2, 0.4)}, target="hrgrad",
                            title="t")
    img = imread(path)
    assert img.shape[0] > 150 and img.shape[1] > 400 and img[..., :3].std() > 0.05     # drawn, not blank
    one = comparison_chart(tmp_path / "one.png", tasks, {"sum": values["sum"]}, {"sum": 0.3})
    assert one.is_file()
    # the size grows with the methods, not without bound with methods x tasks
    many = {f"m{i}": values["sum"] for i in range(17)}
    big = imread(comparison_chart(tmp_path / "many.png", tasks, many, {m: 0.3 for m in many}))
    assert big.shape[1] < 1.5 * img.shape[1] and big.shape[0] > 2 * img.shape[0]


def test_training_curves_with_tasks_and_many_terms(tmp_path):
    steps = np.arange(0, 100, 10)
    loss = np.linspace(10, 1, 10)
    tasks = ["eps1", "eps0.001"]
    terms = {t: loss / 2 for t in tasks}
    errors = {f"{f} {t}": np.linspace(1, 0.1, 10) for t in tasks for f in ("rho", "momentum")}
    path = training_curves(tmp_path / "t.png", steps, loss, terms, errors=errors,
                           weights={f"weight {t}": np.ones(10) for t in tasks}, step_rms=np.ones(10), groups=tasks)
    assert imread(path).shape[0] > 600                     # four panels
    few = imread(training_curves(tmp_path / "f.png", steps, loss, {"a": loss / 2}))
    many = {f"term{i}": loss / (i + 1) for i in range(30)}  # a legend of 31 entries goes beside the plot
    assert imread(training_curves(tmp_path / "m.png", steps, loss, many)).shape[1] > few.shape[1] + 60


def test_profile_panels_one_per_task(tmp_path):
    x, t = np.linspace(0, 1, 20), [0.05, 0.1]
    panels = {f"eps = {e}": (np.ones((2, 20)) * e, None if e == 1 else np.ones((2, 20))) for e in (1, 0.1, 1e-3, 1e-8, 1e-6)}
    img = imread(profile_panels(tmp_path / "p.png", x, t, panels, title="rho"))
    assert img.shape[1] > 4 * img.shape[0] / 2                # four panels a row, two rows
