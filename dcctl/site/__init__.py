"""Site operations: every service of a datacenter moved by the recovery plan, under one record.

decide.py (pure) says which services are already where the operation takes them and what a
site journal records; planning.py takes one snapshot per service and plans each one with the
single-service planner; execute.py runs the groups (and resumes them); report/site.py is the
site report.
"""
