"""Kubelets: the executors that run Pods. One interface (base.py), a local implementation (processes on
this machine) and a Ray implementation (Pods placed on a Ray cluster's nodes)."""
