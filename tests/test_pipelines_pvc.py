"""kfp-kubernetes CreatePVC / DeletePVC: the run controller makes and removes real PersistentVolumeClaims,
and tasks that mount the claim share its directory, through kfp.Client against a real ketch."""

import warnings

from kfp import dsl, kubernetes

from conftest import wait_for

warnings.filterwarnings("ignore", category=FutureWarning)
FINAL = {"SUCCEEDED", "FAILED", "CANCELED", "SKIPPED"}


@dsl.component
def write_data(text: str):
    with open("/data/file.txt", "w") as f:
        f.write(text)


@dsl.component
def read_data() -> str:
    with open("/reused/file.txt") as f:
        return f.read()


@dsl.pipeline
def share_through_pvc(text: str = "through the claim") -> str:
    pvc = kubernetes.CreatePVC(pvc_name_suffix="-my-pvc", access_modes=["ReadWriteOnce"], size="1Gi", storage_class_name="standard")
    w = write_data(text=text).set_caching_options(False)
    r = read_data().after(w).set_caching_options(False)
    kubernetes.mount_pvc(w, pvc_name=pvc.outputs["name"], mount_path="/data")
    kubernetes.mount_pvc(r, pvc_name=pvc.outputs["name"], mount_path="/reused")
    kubernetes.DeletePVC(pvc_name=pvc.outputs["name"]).after(r)
    return r.output


@dsl.pipeline
def static_pvc_kept():
    pvc = kubernetes.CreatePVC(pvc_name="static-claim", access_modes=["ReadWriteOnce"], size="2Gi", annotations={"team": "ml"})
    w = write_data(text="kept").set_caching_options(False)
    kubernetes.mount_pvc(w, pvc_name=pvc.outputs["name"], mount_path="/data")


@dsl.pipeline
def delete_missing():
    kubernetes.DeletePVC(pvc_name="no-such-claim")


def run(k, func) -> dict:
    c = k.kfp_client()
    rid = c.create_run_from_pipeline_func(func, enable_caching=False).run_id
    wait_for(lambda: c.get_run(rid).state in FINAL, timeout=90, what="run finished")
    return k.http().get(f"/apis/v2beta1/runs/{rid}").json()


def test_create_mount_and_delete_a_pvc(shared_ketch):
    k = shared_ketch
    r = run(k, share_through_pvc)
    assert r["state"] == "SUCCEEDED", r.get("error")
    assert r["pipeline_outputs"]["parameters"] == {"Output": "through the claim"}
    tasks = {t["task_name"]: t for t in r["run_details"]["task_details"]}
    assert tasks["createpvc"]["state"] == tasks["deletepvc"]["state"] == "SUCCEEDED"
    # KFP's naming: a uuid followed by the suffix; both tasks mounted that claim; DeletePVC removed it after
    pods = [p for p in k.kjson("get", "pods", "-n", "kubeflow")["items"] if p["metadata"]["name"].startswith(r["run_id"][:20])]
    claims = {p["metadata"]["annotations"]["pipelines.kubeflow.org/task-name"]: p["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"]
              for p in pods if p["spec"].get("volumes")}
    assert set(claims) == {"write-data", "read-data"} and len(set(claims.values())) == 1, claims
    name = claims["read-data"]
    assert name.endswith("-my-pvc") and len(name) == 36 + len("-my-pvc")
    assert k.kubectl("get", "pvc", name, "-n", "kubeflow", check=False).returncode != 0


def test_static_name_and_annotations_and_the_claim_outlives_the_run(shared_ketch):
    k = shared_ketch
    r = run(k, static_pvc_kept)
    assert r["state"] == "SUCCEEDED", r.get("error")
    pvc = k.kjson("get", "pvc", "static-claim", "-n", "kubeflow")
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"] and pvc["spec"]["resources"]["requests"]["storage"] == "2Gi"
    assert pvc["metadata"]["annotations"]["team"] == "ml"
    assert pvc["status"]["phase"] == "Bound"
    k.kubectl("delete", "pvc", "static-claim", "-n", "kubeflow")


def test_deleting_a_missing_pvc_fails_the_task_naming_it(shared_ketch):
    r = run(shared_ketch, delete_missing)
    assert r["state"] == "FAILED"
    assert "deletepvc" in r["error"]["message"] and "no-such-claim" in r["error"]["message"]
