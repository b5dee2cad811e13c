"""API machinery: the semantics of the Kubernetes API (validation, patching, apply, watch, deletion),
independent of HTTP so controllers call it in-process and the server maps it onto REST.
"""
