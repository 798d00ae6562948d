"""Block storage (the heat-scored tiered store lands here)."""
