"""``ketch.tuning.tune``: a Python function tuned on a real ketch in a few lines; trials are real Job pods run
by the local kubelet, and the live rich view is rendered to a (recorded) terminal."""

from __future__ import annotations

import io
import math

import pytest

from conftest import make_ketch


@pytest.fixture(scope="module")
def k(tmp_path_factory):
    kk = make_ketch(tmp_path_factory.mktemp("tuning-tune")).start()
    try:
        yield kk
    finally:
        kk.stop()


def objective(lr: float, layers: int, act: str):
    import math

    return (math.log10(lr) + 2) ** 2 + abs(layers - 3) + (0 if act == "relu" else 1)


def metrics(x: float):
    return {"accuracy": 1 - (x - 0.5) ** 2, "loss": (x - 0.5) ** 2}


def test_tune_a_function_with_live_view(k):
    from rich.console import Console

    from ketch.tuning.tune import tune

    out = io.StringIO()
    res = tune(objective, {"lr": (1e-4, 1.0, "log"), "layers": (1, 6), "act": ["relu", "tanh"]}, max_trials=5, parallel=2,
               algorithm="random", random_state=1, url=k.url, token=k.token, console=Console(file=out, force_terminal=True, width=160))
    assert res["status"] == "Succeeded"
    trials = res["trials"]
    assert len(trials) == 5
    values = []
    for t in trials:
        a = {p["name"]: p["value"] for p in t["spec"]["parameterAssignments"]}
        [m] = t["status"]["observation"]["metrics"]
        expect = (math.log10(float(a["lr"])) + 2) ** 2 + abs(int(a["layers"]) - 3) + (0 if a["act"] == "relu" else 1)
        assert abs(float(m["latest"]) - expect) < 1e-6
        values.append(expect)
    assert res["value"] == pytest.approx(min(values))
    assert isinstance(res["parameters"]["layers"], int) and res["parameters"]["act"] in ("relu", "tanh")
    screen = out.getvalue()
    assert res["experiment"] in screen and "Succeeded" in screen and "5/5 succeeded" in screen
    assert all(t["metadata"]["name"] in screen for t in trials)


def test_tune_dict_metrics_maximize(k):
    from ketch.tuning.tune import tune

    res = tune(metrics, {"x": (0.0, 1.0)}, objective="accuracy", direction="maximize", max_trials=3, algorithm="random",
               random_state=2, url=k.url, token=k.token, progress=False)
    assert res["status"] == "Succeeded"
    accs = [float(next(m["latest"] for m in t["status"]["observation"]["metrics"] if m["name"] == "accuracy")) for t in res["trials"]]
    assert res["value"] == pytest.approx(max(accs)) and 0 <= res["parameters"]["x"] <= 1


def test_tune_refuses_bad_space(k):
    from ketch.tuning.tune import tune

    with pytest.raises(ValueError, match=r"space\['x'\]"):
        tune(metrics, {"x": "wide"}, url=k.url, token=k.token, progress=False)
    with pytest.raises(ValueError, match="ketch refused the Experiment"):
        tune(metrics, {"x": (1.0, 0.0)}, url=k.url, token=k.token, progress=False)
