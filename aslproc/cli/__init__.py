"""Command-line interface of aslproc (BIDS-Apps conventions)."""
