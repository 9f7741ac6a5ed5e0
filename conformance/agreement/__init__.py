"""Agreement between implementations on the same checkpoint: the matrix of every pair's outputs,
per-block divergence, the report, and diagnosis of a disagreement."""
