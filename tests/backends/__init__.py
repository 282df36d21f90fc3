"""What is specific to one framework: its conventions, its import order, and its own folder of tests."""
