"""Which attributes describe is sure enough of to ask about (one threshold, read by the pipeline and the bench)."""

MIN_CONFIDENCE = 0.7
