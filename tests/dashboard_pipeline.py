"""Small KFP pipelines for the dashboard tests: a parameter step, a step logging Metrics and
ClassificationMetrics, and a step writing HTML, Markdown and a Dataset (what the run page renders)."""

from kfp import dsl
from kfp.dsl import HTML, ClassificationMetrics, Dataset, Markdown, Metrics, Output


@dsl.component(base_image="python:3.11")
def prep(n: int) -> int:
    print(f"preparing {n} rows")
    return n * 2

@dsl.component(base_image="python:3.11")
def train(rows: int, lr: float, metrics: Output[Metrics], cls: Output[ClassificationMetrics]) -> float:
    print(f"training on {rows} rows with lr={lr}")
    acc = min(0.99, 0.5 + lr * rows / 100)
    metrics.log_metric("accuracy", acc)
    metrics.log_metric("rows", rows)
    cls.log_confusion_matrix(["cat", "dog"], [[8, 2], [1, 9]])
    cls.log_roc_curve(fpr=[0.0, 0.2, 1.0], tpr=[0.0, 0.8, 1.0], threshold=[1.0, 0.5, 0.0])
    return acc

@dsl.pipeline(name="dash-demo")
def demo(n: int = 10, lr: float = 0.1):
    p = prep(n=n)
    train(rows=p.output, lr=lr)


@dsl.component(base_image="python:3.11")
def report(acc: float, page: Output[HTML], notes: Output[Markdown], data: Output[Dataset]):
    with open(page.path, "w") as f:
        f.write(f"<h1 id='acc'>accuracy {acc}</h1><script>parent.document.title = 'pwned'</script>")
    with open(notes.path, "w") as f:
        f.write(f"# Notes\n\n- accuracy **{acc}**\n- <b>not bold</b>\n")
    with open(data.path, "w") as f:
        f.write("x,y\n1,2\n3,4\n")


@dsl.pipeline(name="dash-report")
def with_report(n: int = 10, lr: float = 0.1):
    p = prep(n=n)
    t = train(rows=p.output, lr=lr)
    report(acc=t.outputs["Output"])
