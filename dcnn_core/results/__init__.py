"""Results: evaluation, explanations, projections, exports and the Plotly figures of a trained run."""
