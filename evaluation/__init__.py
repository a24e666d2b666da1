"""Golden-conversation evaluation: cases as data (YAML files and rows), the runner through the real pipeline, the
checks, the report and its baseline, and cases saved from the review queue."""
