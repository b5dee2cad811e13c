"""How long the dashboard takes to load and draw big objects, next to the API calls it draws them from.

Run by hand: ``python benchmarks/dashboard.py [--quick]``. Starts a ``ketch up`` on a free loopback port and
headless Chromium (Debian's, /usr/bin/chromium), logged in as a user is (the login form posted with the admin
token, so the browser holds the session cookie), then prints:

* a tuning experiment of 500 trials: time from navigation until the trials table (500 rows), the objective
  chart and the parallel-coordinates plot (500 lines) are drawn, against the two list calls the page is
  built from (the experiment and its trials) made from Python in the same run;
* a run of 200 tasks (a pipeline compiled by the real KFP compiler: 20 layers of 10 tasks, each task
  depending on two of the layer above): time until the run page has drawn all 200 nodes, against the
  GET /apis/v2beta1/runs/{id} it is built from, and the graph's layout + SVG time alone;
* the resources browser listing 500 objects of a CRD as a Table, against that Table list call.
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "src"), str(ROOT / "benchmarks")]

from _server import ketch_server  # noqa: E402

from conftest import CHROMIUM, CHROMIUM_ARGS  # noqa: E402
from dashboard_kinds import TUNING_CRDS, acc_of, crd, experiment, trial, trial_status  # noqa: E402

N_TRIALS, N_OBJECTS, LAYERS, WIDTH = 500, 500, 20, 10


def timed(fn, n: int = 5) -> float:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


def seed(c: httpx.Client) -> None:
    for d in [*TUNING_CRDS, crd("bench.ketch.io", "v1", "Item", "items")]:
        r = c.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=d)
        if r.status_code != 409:  # Katib's own CRDs may be installed already
            r.raise_for_status()
    for _ in range(200):
        if c.get("/apis/bench.ketch.io/v1").status_code == 200 and c.get("/apis/kubeflow.org/v1beta1").status_code == 200:
            break
        time.sleep(0.05)
    base = "/apis/kubeflow.org/v1beta1/namespaces/default"
    r = c.post(f"{base}/experiments", json=experiment("big", max_trials=N_TRIALS))
    assert r.status_code == 201, r.text
    for i in range(N_TRIALS):
        t = c.post(f"{base}/trials", json=trial("big", i)).json()
        t["status"] = trial_status(acc_of(i))
        c.put(f"{base}/trials/{t['metadata']['name']}/status", json=t).raise_for_status()
    for i in range(N_OBJECTS):
        c.post("/apis/bench.ketch.io/v1/namespaces/default/items", json={"apiVersion": "bench.ketch.io/v1", "kind": "Item",
               "metadata": {"name": f"item-{i:04d}"}, "spec": {"i": i}}).raise_for_status()


def big_pipeline_spec(tmp: Path) -> dict:
    """200 tasks in 20 layers of 10, each depending on two tasks of the layer above, all behind one gate
    task that fails at once: the run is real, but its 200 tasks are skipped rather than run as processes."""
    import yaml
    from kfp import compiler, dsl

    @dsl.component(base_image="python:3.11")
    def gate() -> int:
        raise SystemExit("closed")

    @dsl.component(base_image="python:3.11")
    def step(a: int, b: int) -> int:
        return a + b

    @dsl.pipeline(name="big")
    def big():
        g = gate()
        prev = [step(a=g.output, b=i) for i in range(WIDTH)]
        for _ in range(LAYERS - 1):
            prev = [step(a=prev[i].output, b=prev[(i + 1) % WIDTH].output) for i in range(WIDTH)]

    path = tmp / "big.yaml"
    compiler.Compiler().compile(big, str(path))
    return yaml.safe_load(path.read_text())


def start_big_run(c: httpx.Client, spec: dict) -> str:
    run = c.post("/apis/v2beta1/runs", json={"display_name": "big", "pipeline_spec": spec}).raise_for_status().json()
    for _ in range(600):
        if c.get(f"/apis/v2beta1/runs/{run['run_id']}").json()["state"] in ("FAILED", "SUCCEEDED"):
            break
        time.sleep(0.1)
    return run["run_id"]


def main() -> None:
    global N_TRIALS, N_OBJECTS, LAYERS
    from playwright.sync_api import sync_playwright

    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="a short run that proves the benchmark works (20 trials, 20 objects, 3 layers)")
    if ap.parse_args().quick:
        N_TRIALS, N_OBJECTS, LAYERS = 20, 20, 3
    # The tuning controllers are left out: the trials are written in the shape Katib writes them, and only
    # the page that reads them is measured.
    with tempfile.TemporaryDirectory() as d, ketch_server({"KETCH_DISABLE": "tuning"}) as k:
        tmp = Path(d)
        url = k.url
        with k.http() as c:
            seed(c)
            base = "/apis/kubeflow.org/v1beta1/namespaces/default"
            api_tuning = timed(lambda: (c.get(f"{base}/experiments?fieldSelector=metadata.name%3Dbig").raise_for_status(),
                                        c.get(f"{base}/trials?labelSelector=katib.kubeflow.org%2Fexperiment%3Dbig").raise_for_status()))
            table = {"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"}
            api_items = timed(lambda: c.get("/apis/bench.ketch.io/v1/namespaces/default/items", headers=table).raise_for_status())
        spec = big_pipeline_spec(tmp)
        n_tasks = len(spec["root"]["dag"]["tasks"])
        with k.http() as c:
            run_id = start_big_run(c, spec)
            api_run = timed(lambda: c.get(f"/apis/v2beta1/runs/{run_id}").raise_for_status())
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = b.new_page(viewport={"width": 1400, "height": 900})
            login = page.context.request.post(f"{url}/login", form={"token": k.token}, max_redirects=0)
            assert login.status == 303, login.text()  # the session cookie is now in the browser context
            page.set_default_timeout(120000)

            def load(hash_path: str, ready: str) -> float:
                page.goto("about:blank")
                page.goto(f"{url}/#{hash_path}")
                page.wait_for_function(f"() => ({ready})")
                return page.evaluate("performance.now()") / 1000

            ui_tuning = statistics.median(load("/tuning/default/big",
                f"document.querySelectorAll('#trials-table tbody tr').length === {N_TRIALS} && "
                f"document.querySelectorAll('#parallel-coordinates polyline').length === {N_TRIALS} && "
                "!!document.querySelector('#objective-chart')") for _ in range(3))
            ui_run = statistics.median(load(f"/runs/details/{run_id}",
                f"document.querySelectorAll('#dag g.node').length === {n_tasks}") for _ in range(3))
            ui_items = statistics.median(load("/resources/bench.ketch.io/items",
                f"document.querySelectorAll('table.resource-table tbody tr').length === {N_OBJECTS}") for _ in range(3))
            dag = page.evaluate("""async (spec) => {
                const { dagSvg } = await import('/ui/js/dag.js');
                const { graphOf } = await import('/ui/js/pages/pipelines.js');
                const text = JSON.stringify(spec);
                const times = [], parse = [];
                for (let i = 0; i < 5; i++) {
                  let t0 = performance.now(); const s = JSON.parse(text); parse.push(performance.now() - t0);
                  t0 = performance.now();
                  const g = graphOf(s);
                  g.nodes.forEach((n, j) => n.state = ['SUCCEEDED', 'RUNNING', 'PENDING'][j % 3]);
                  const svg = dagSvg(g.nodes, g.edges);
                  document.getElementById('main').replaceChildren(svg);
                  svg.getBoundingClientRect();
                  times.push(performance.now() - t0);
                }
                times.sort((a, b) => a - b); parse.sort((a, b) => a - b);
                return { render: times[2] / 1000, parse: parse[2] / 1000, nodes: document.querySelectorAll('#dag g.node').length };
            }""", spec)
            b.close()
    print(f"tuning experiment, {N_TRIALS} trials: page loaded and drawn in {ui_tuning * 1000:.0f} ms; "
          f"the 2 list calls it is built from take {api_tuning * 1000:.0f} ms (ratio {ui_tuning / api_tuning:.1f}x)")
    print(f"resources browser, {N_OBJECTS} objects: page loaded and drawn in {ui_items * 1000:.0f} ms; "
          f"its Table list call takes {api_items * 1000:.0f} ms (ratio {ui_items / api_items:.1f}x)")
    print(f"run of {n_tasks} tasks: page loaded and drawn in {ui_run * 1000:.0f} ms; "
          f"GET /apis/v2beta1/runs/<id> it is built from takes {api_run * 1000:.0f} ms (ratio {ui_run / api_run:.1f}x)")
    print(f"  of which graph layout + SVG: {dag['render'] * 1000:.1f} ms ({dag['nodes']} nodes); "
          f"parsing the spec in the browser: {dag['parse'] * 1000:.1f} ms")


if __name__ == "__main__":
    main()
