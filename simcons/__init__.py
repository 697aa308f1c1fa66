"""simcons: representational similarity of vision models and its consistency across datasets."""

__version__ = "0.1.0"
