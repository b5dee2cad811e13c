"""The central dashboard: one web app over the APIs."""
