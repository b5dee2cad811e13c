"""The pipeline pages' building blocks in headless Chromium, on the dashboard served by a real ``ketch up``:
the run graph drawn from a pipeline compiled by the real KFP compiler, with task states; artifacts rendered
from the metadata the real KFP SDK writes (Metrics table, ClassificationMetrics confusion matrix and ROC
curve); HTML and Markdown sandboxed. The KFP REST pages themselves need the pipelines backend (branch
``pipelines``), which has nothing to merge yet; their routes are checked in test_dashboard_core."""

import json

import yaml
from kfp import compiler, dsl
from kfp.dsl import ClassificationMetrics, Dataset, Input, Metrics, Model, Output
from playwright.sync_api import expect


@dsl.component(base_image="python:3.11")
def load(n: int) -> int:
    return n


@dsl.component(base_image="python:3.11")
def train(x: int, lr: float) -> float:
    return x * lr


@dsl.component(base_image="python:3.11")
def evaluate(a: float, b: float) -> float:
    return a + b


@dsl.pipeline(name="diamond")
def diamond(n: int = 3, lr: float = 0.1):
    src = load(n=n)
    left = train(x=src.output, lr=lr).set_display_name("train-left")
    right = train(x=src.output, lr=lr).set_display_name("train-right")
    evaluate(a=left.output, b=right.output)


def compiled(tmp_path) -> dict:
    path = tmp_path / "diamond.yaml"
    compiler.Compiler().compile(diamond, str(path))
    return yaml.safe_load(path.read_text())


def test_run_graph_from_a_compiled_pipeline_with_task_states(dashboard, tmp_path):
    spec = compiled(tmp_path)
    page = dashboard.open("/")
    expect(page.locator("#nav a")).to_have_count(13)
    states = {"load": "SUCCEEDED", "train": "RUNNING", "train-2": "FAILED"}
    page.evaluate("""async ([spec, states]) => {
        const { dagSvg } = await import('/ui/js/dag.js');
        const { graphOf } = await import('/ui/js/pages/pipelines.js');
        const g = graphOf(spec);
        for (const n of g.nodes) n.state = states[n.id] || 'PENDING';
        const main = document.getElementById('main');
        main.replaceChildren(dagSvg(g.nodes, g.edges));
    }""", [spec, states])
    nodes = page.locator("#dag g.node")
    expect(nodes).to_have_count(4)
    expect(page.locator("#dag path.edge")).to_have_count(4)
    expect(page.locator("#dag g.node[data-task=load]")).to_have_attribute("data-state", "SUCCEEDED")
    expect(page.locator("#dag g.node[data-task=train-2]")).to_have_attribute("data-state", "FAILED")
    expect(page.locator("#dag g.node[data-task=evaluate]")).to_have_attribute("data-state", "PENDING")
    # Layers follow the dependencies: load above both trains, evaluate below them.
    y = {t: page.locator(f"#dag g.node[data-task={t}]").bounding_box()["y"] for t in ["load", "train", "train-2", "evaluate"]}
    assert y["load"] < y["train"] == y["train-2"] < y["evaluate"], y
    expect(page.locator("#dag g.node[data-task=train] text")).to_have_text("train-left")
    dashboard.shot("pipeline-dag")


@dsl.component(base_image="python:3.11")
def shard(i: int, data: Output[Dataset]):
    open(data.path, "w").write(str(i))


@dsl.component(base_image="python:3.11")
def fit(data: Input[Dataset], model: Output[Model]):
    open(model.path, "w").write(open(data.path).read())


@dsl.pipeline(name="wide")
def wide():
    for i in range(20):
        s = shard(i=i)
        fit(data=s.outputs["data"])


def test_run_graph_artifact_nodes_and_a_wide_layer_wrapped(dashboard, tmp_path):
    path = tmp_path / "wide.yaml"
    compiler.Compiler().compile(wide, str(path))
    spec = yaml.safe_load(path.read_text())
    page = dashboard.open("/")
    expect(page.locator("#nav a")).to_have_count(13)
    page.evaluate("""async (spec) => {
        const { dagSvg } = await import('/ui/js/dag.js');
        const { graphOf } = await import('/ui/js/pages/pipelines.js');
        const g = graphOf(spec);
        document.getElementById('main').replaceChildren(dagSvg(g.nodes, g.edges));
    }""", spec)
    # 40 tasks and their 40 output artifacts (20 Datasets, 20 Models), each its own small node
    expect(page.locator("#dag g.node")).to_have_count(40)
    expect(page.locator("#dag g.artifact-node")).to_have_count(40)
    expect(page.locator('#dag g.artifact-node[data-artifact="shard/data"]')).to_have_attribute("data-type", "Dataset")
    expect(page.locator('#dag g.artifact-node[data-artifact="fit/model"]')).to_contain_text("model")
    # task -> artifact -> consuming task, and no direct shard -> fit edge beside it
    expect(page.locator('#dag path.edge[data-from=shard][data-to="shard/data"]')).to_have_count(1)
    expect(page.locator('#dag path.edge[data-from="shard/data"][data-to=fit]')).to_have_count(1)
    expect(page.locator("#dag path.edge[data-from=shard][data-to=fit]")).to_have_count(0)
    expect(page.locator("#dag path.edge")).to_have_count(60)
    # The 20-wide layer wraps: the graph stays about one screen wide and the artifact sits between
    # its producer and its consumer.
    width = float(page.locator("#dag").get_attribute("width"))
    assert width < 1500, width
    box = {k: page.locator(sel).bounding_box() for k, sel in {
        "shard": "#dag g.node[data-task=shard]", "data": '#dag g.artifact-node[data-artifact="shard/data"]',
        "fit": "#dag g.node[data-task=fit]"}.items()}
    assert box["shard"]["y"] < box["data"]["y"] < box["fit"]["y"], box
    assert box["data"]["width"] < box["shard"]["width"], box
    dashboard.shot("pipeline-dag-wide")


def test_artifacts_render_metrics_confusion_matrix_roc_and_sandboxed_html(dashboard):
    m = Metrics(name="metrics")
    m.log_metric("accuracy", 0.93)
    m.log_metric("loss", 0.21)
    cm = ClassificationMetrics(name="cls")
    cm.log_confusion_matrix(["setosa", "versicolor", "virginica"], [[10, 0, 0], [0, 8, 2], [0, 1, 9]])
    cm.log_roc_curve(fpr=[0.0, 0.1, 0.3, 1.0], tpr=[0.0, 0.7, 0.9, 1.0], threshold=[1.0, 0.8, 0.5, 0.0])
    arts = [
        {"artifact_id": "1", "name": "metrics", "type": "system.Metrics", "metadata": m.metadata, "uri": "file:///x/metrics"},
        {"artifact_id": "2", "name": "cls", "type": "system.ClassificationMetrics", "metadata": cm.metadata, "uri": "file:///x/cls"},
    ]
    page = dashboard.open("/")
    expect(page.locator("#nav a")).to_have_count(13)
    page.evaluate("""async (arts) => {
        const { renderArtifact, sandboxed, markdownToHtml } = await import('/ui/js/pages/pipelines.js');
        const main = document.getElementById('main');
        main.replaceChildren();
        for (const a of arts) main.appendChild(await renderArtifact(a));
        main.appendChild(sandboxed('<h1 id=x>report</h1><script>parent.document.title = "pwned"</script><img src="https://example.com/x.png">'));
        const md = sandboxed(markdownToHtml('# Title\\n\\n- one **bold**\\n- <script>alert(1)</script>\\n'));
        md.id = 'md';
        main.appendChild(md);
    }""", arts)
    metrics = page.locator("#metrics-table")
    expect(metrics.locator("tbody tr", has_text="accuracy")).to_contain_text("0.93")
    expect(metrics.locator("tbody tr", has_text="loss")).to_contain_text("0.21")
    cmx = page.locator("#confusion-matrix")
    expect(cmx.locator("rect")).to_have_count(9)
    expect(cmx).to_contain_text("versicolor")
    expect(page.locator("#roc-curve polyline")).to_have_count(1)
    points = page.locator("#roc-curve polyline").get_attribute("points").split()
    assert len(points) == 6  # (0,0) + the four logged points + (1,1)
    frames = page.locator("iframe.sandboxed")
    expect(frames).to_have_count(2)
    assert frames.first.get_attribute("sandbox") == ""
    expect(page.frame_locator("iframe.sandboxed").first.locator("#x")).to_have_text("report")
    assert page.title() == "ketch"  # the artifact's script never ran
    md = page.frame_locator("#md")
    expect(md.locator("h1")).to_have_text("Title")
    expect(md.locator("li").nth(1)).to_have_text("<script>alert(1)</script>")
    expect(md.locator("b")).to_have_text("bold")
    dashboard.shot("pipeline-artifacts")
    # The page's CSP stopped the artifact's image from reaching another host (the fixture checks every request).
    assert json.dumps(dashboard.foreign_requests()) == "[]"
