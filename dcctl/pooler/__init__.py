"""PgBouncer in front of a service: its admin console, the include file dcctl owns, and the decisions."""
