"""Paper-style reports: Tables 2-4 beside the paper's numbers, Figs. 5 and 9, README.md and summary.json."""
