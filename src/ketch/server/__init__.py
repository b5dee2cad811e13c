"""The API server: Kubernetes-compatible REST, discovery and OpenAPI, plus every component's routes, on one port."""
