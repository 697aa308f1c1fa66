"""simcons.extract."""
