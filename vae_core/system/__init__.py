"""What the machine gives a run: its memory (`memory`) and its CPU threads (`threads`)."""
