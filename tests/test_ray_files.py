"""What the Ray kubelet ships to a node that does not see ketch's home, and what comes back (ray_files.py), on
real directories: one stands for ketch's machine, the files are laid in a second ("the node") by moving the
home aside between the two steps, as the node's paths are the same as ketch's."""

import json
import os
import shutil

from ketch.kubelet import ray_files


def _pod(tmp_path):
    home = tmp_path / "home"
    pod_dir = home / "kubelet" / "pods" / "uid-1"
    (pod_dir / "volumes" / "cfg").mkdir(parents=True)
    (pod_dir / "volumes" / "cfg" / "greeting").write_text("hi")
    (pod_dir / "volumes" / "tok").mkdir()
    (pod_dir / "volumes" / "tok" / "token").write_text("secret-token")
    os.chmod(pod_dir / "volumes" / "tok" / "token", 0o600)
    (pod_dir / "volumes" / "scratch" / "sub").mkdir(parents=True)
    (pod_dir / "volumes" / "scratch" / "left-here").write_text("emptyDir content stays here")
    (pod_dir / "kubeconfig").write_text("apiVersion: v1")
    (pod_dir / "state.json").write_text("{}")
    (pod_dir / "exits").mkdir()
    (pod_dir / "exits" / "main.0.exit").write_text("{}")
    task_dir = home / "pipelines" / "runs" / "r1" / "t1"
    task_dir.mkdir(parents=True)
    (task_dir / "task-1.json").write_text(json.dumps({"taskDir": str(task_dir)}))
    (home / "volumes" / "ns" / "claim").mkdir(parents=True)
    (home / "volumes" / "ns" / "claim" / "big").write_text("pvc data")
    pod = {"spec": {"volumes": [{"name": "cfg", "configMap": {"name": "c"}}, {"name": "tok", "projected": {"sources": []}},
                                {"name": "scratch", "emptyDir": {}}]}}
    argv = ["/usr/bin/python3", "-m", "ketch.pipelines.launcher", str(task_dir / "task-1.json"), str(home / "volumes" / "ns" / "claim" / "big")]
    return home, pod_dir, task_dir, pod, argv


def test_the_bundle_holds_the_pods_files_and_the_task_directory_not_its_state_nor_pvcs(tmp_path):
    home, pod_dir, task_dir, pod, argv = _pod(tmp_path)
    b = ray_files.collect(pod, pod_dir, home, argv, {"PATH": "/usr/bin"}, str(pod_dir / "work"), [str(home / "pipelines" / "runs")])
    assert set(b["files"]) == {str(pod_dir / "kubeconfig"), str(pod_dir / "volumes" / "cfg" / "greeting"),
                               str(pod_dir / "volumes" / "tok" / "token"), str(task_dir / "task-1.json")}
    assert b["files"][str(pod_dir / "volumes" / "tok" / "token")] == (b"secret-token", 0o600)
    assert str(pod_dir / "volumes" / "scratch" / "sub") in b["dirs"] and str(pod_dir / "exits") in b["dirs"]
    assert str(pod_dir / "work") in b["dirs"]
    assert b["back"] == [str(task_dir)]


def test_laid_on_the_node_then_what_the_container_wrote_comes_back(tmp_path):
    home, pod_dir, task_dir, pod, argv = _pod(tmp_path)
    b = ray_files.collect(pod, pod_dir, home, argv, {}, str(pod_dir / "work"), [str(home / "pipelines" / "runs")])
    shutil.move(home, tmp_path / "ketchs-machine")  # the node: none of ketch's files
    before = ray_files.lay(b)
    assert (pod_dir / "volumes" / "tok" / "token").read_text() == "secret-token"
    assert oct((pod_dir / "volumes" / "tok" / "token").stat().st_mode & 0o777) == "0o600"
    assert (pod_dir / "volumes" / "scratch").is_dir() and not (pod_dir / "volumes" / "scratch" / "left-here").exists()
    assert not (pod_dir / "state.json").exists()
    (task_dir / "result.json").write_text('{"parameters": {}}')  # the container's work, on the node
    (task_dir / "sub").mkdir()
    (task_dir / "sub" / "out").write_text("x")
    back = ray_files.changed(b["back"], before)
    assert back == {str(task_dir / "result.json"): b'{"parameters": {}}', str(task_dir / "sub" / "out"): b"x"}
    shutil.rmtree(home)
    shutil.move(tmp_path / "ketchs-machine", home)  # ketch's machine again
    ray_files.receive({**back, str(home / "tokens.csv"): b"not from a shipped directory"}, b["back"])
    assert (task_dir / "result.json").read_text() == '{"parameters": {}}'
    assert not (home / "tokens.csv").exists()


def test_a_node_sees_the_home_only_with_this_ketchs_token(tmp_path):
    m = tmp_path / "marker"
    assert not ray_files.sees(str(m), "abc")
    m.write_text("abc")
    assert ray_files.sees(str(m), "abc") and not ray_files.sees(str(m), "another ketch's")


def test_a_pods_argv_cannot_make_ketch_ship_its_keys_or_another_pods_files(tmp_path):
    """Only directories below the roots components declare (the pipelines' run directories) are shipped for
    paths a command names: a Pod naming ketch's TLS key, another Pod's token or a run root itself gets none."""
    home, pod_dir, task_dir, pod, _argv = _pod(tmp_path)
    (home / "tls").mkdir()
    (home / "tls" / "tls.key").write_text("ketch's key")
    other = home / "kubelet" / "pods" / "uid-2" / "volumes" / "tok"
    other.mkdir(parents=True)
    (other / "token").write_text("another pod's token")
    argv = ["/bin/cat", str(home / "tls" / "tls.key"), str(other / "token"), str(home / "pipelines" / "runs"), str(home / "sa.key")]
    b = ray_files.collect(pod, pod_dir, home, argv, {}, str(pod_dir / "work"), [str(home / "pipelines" / "runs")])
    shipped = set(b["files"])
    assert not any("tls" in f or "uid-2" in f for f in shipped), shipped
    assert b["back"] == [] and str(task_dir / "task-1.json") not in shipped
    assert ray_files.collect(pod, pod_dir, home, [str(task_dir / "task-1.json")], {}, str(pod_dir), [])["back"] == []
