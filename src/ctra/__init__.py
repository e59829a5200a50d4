"""ctra: CTRA scores from leukocyte RNA-seq and arm x time tests for randomized trials."""

__version__ = "0.1.0"
