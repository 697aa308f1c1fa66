"""simcons.report."""
