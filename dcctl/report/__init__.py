"""Reports people read: the history of operations (`dcctl history`, `dcctl report`) and the
charts drawn in them (inline SVG: no script, no external file)."""
