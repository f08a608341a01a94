"""Points: rule tables, the ledger, balances and leaderboards."""
