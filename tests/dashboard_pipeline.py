"""A small KFP pipeline for the dashboard tests: a parameter step, then a step logging Metrics and
ClassificationMetrics (what the run page renders)."""

from kfp import dsl
from kfp.dsl import ClassificationMetrics, Metrics, Output


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
