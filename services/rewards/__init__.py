"""Rewards: the catalog, stock, redemptions and pickup codes."""
