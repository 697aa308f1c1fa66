"""simcons.consistency."""
