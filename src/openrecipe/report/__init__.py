"""The whole run's report: report.md and report.html built from every stage's recorded results."""
