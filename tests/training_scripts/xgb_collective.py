"""An XGBoostJob replica: the Master hosts the tracker at MASTER_ADDR:MASTER_PORT, every replica joins
XGBoost's collective with its RANK and trains on its own shard; the collective makes the model the same
everywhere, which each replica prints as a digest."""

import hashlib
import os

import numpy as np
import xgboost as xgb
from xgboost import collective
from xgboost.tracker import RabitTracker

addr, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
tracker = None
if rank == 0:
    tracker = RabitTracker(n_workers=world, host_ip=addr, port=port)
    tracker.start()
with collective.CommunicatorContext(dmlc_tracker_uri=addr, dmlc_tracker_port=port, dmlc_task_id=str(rank)):
    assert collective.get_world_size() == world and collective.get_rank() == rank
    rng = np.random.default_rng(rank)
    X = rng.normal(size=(500, 5))
    y = X @ np.array([1.0, -2.0, 0.5, 0.0, 3.0]) + rng.normal(scale=0.1, size=500)
    evals: dict = {}
    dtrain = xgb.DMatrix(X, y)
    bst = xgb.train({"tree_method": "hist", "max_depth": 3, "eta": 0.3}, dtrain, 10,
                    evals=[(dtrain, "train")], evals_result=evals, verbose_eval=False)
    rmse = evals["train"]["rmse"]
    digest = hashlib.sha256(bst.save_raw("json")).hexdigest()[:16]
    print(f"rank={rank} world={collective.get_world_size()} rmse_first={rmse[0]:.3f} rmse_last={rmse[-1]:.3f} model={digest}", flush=True)
if tracker is not None:
    tracker.wait_for()
