"""Retraining from the stored ground truth: ``riskstream retrain`` (the warehouse meets training)."""
