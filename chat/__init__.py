"""The chat page: a small HTML/CSS/JS client of the REST API (session auth), served at /."""
