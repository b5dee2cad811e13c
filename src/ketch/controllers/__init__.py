"""Controllers: one module per kind, each a level-triggered reconcile loop on the controller runtime."""
