"""Per-subject HTML report."""
