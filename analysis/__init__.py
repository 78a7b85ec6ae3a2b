"""Churn analysis of runctrace recordings, as pure pandas functions (see runctrace report)."""
