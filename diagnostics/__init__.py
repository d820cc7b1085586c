"""Deterministic diagnostics: findings rules and streaming anomaly detection (no Django)."""
