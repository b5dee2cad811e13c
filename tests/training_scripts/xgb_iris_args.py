"""The program behind an args-only XGBoostJob container, as in Kubeflow's xgboost-dist-iris example: the
image's ENTRYPOINT (mapped in images.yaml) is this script, and the job's ``args`` are its flags. Every
replica joins XGBoost's collective at MASTER_ADDR:MASTER_PORT and trains on its shard of iris."""

import argparse
import hashlib
import os

import numpy as np
import xgboost as xgb
from sklearn.datasets import load_iris
from xgboost import collective
from xgboost.tracker import RabitTracker

ap = argparse.ArgumentParser()
ap.add_argument("--job_type", required=True, choices=["Train", "Predict"])
ap.add_argument("--xgboost_parameter", default="")
ap.add_argument("--n_estimators", type=int, default=10)
ap.add_argument("--learning_rate", type=float, default=0.1)
a = ap.parse_args()
params = {"tree_method": "hist", "eta": a.learning_rate}
for kv in filter(None, a.xgboost_parameter.split(",")):
    k, v = kv.split(":", 1)
    params[k] = int(v) if v.isdigit() else v

addr, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
tracker = None
if rank == 0:
    tracker = RabitTracker(n_workers=world, host_ip=addr, port=port)
    tracker.start()
X, y = load_iris(return_X_y=True)
idx = np.arange(len(y))[rank::world]
with collective.CommunicatorContext(dmlc_tracker_uri=addr, dmlc_tracker_port=port, dmlc_task_id=str(rank)):
    d = xgb.DMatrix(X[idx], y[idx])
    evals: dict = {}
    bst = xgb.train(params, d, a.n_estimators, evals=[(d, "train")], evals_result=evals, verbose_eval=False)
    loss = evals["train"][next(iter(evals["train"]))]
    digest = hashlib.sha256(bst.save_raw("json")).hexdigest()[:16]
    print(f"job_type={a.job_type} rank={rank} world={world} loss_first={loss[0]:.3f} loss_last={loss[-1]:.3f} model={digest}", flush=True)
if tracker is not None:
    tracker.wait_for()
