"""The bare DRF endpoint the API benchmark compares against (installed with SWITCHBOARD_BENCH=1)."""
