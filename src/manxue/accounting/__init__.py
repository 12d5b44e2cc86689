"""Keys, limits, balances, prices and the ledger: what turns tokens into an invoice."""
