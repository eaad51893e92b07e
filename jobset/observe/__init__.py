"""Seeing a job set: a live progress display, the notebook view, the timeline of its
sub-jobs (and its plot) and OpenTelemetry traces."""
