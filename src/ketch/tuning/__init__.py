"""Hyperparameter tuning: Katib Experiment, Suggestion and Trial."""
